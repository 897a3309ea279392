"""Decisions of the OpenTelemetry Python SDK's TraceIdRatioBased, for the differential test.

Usage: python_sdk_ratio.py IDS_FILE OUT_FILE RATIO...

IDS_FILE holds 128-bit trace ids, 16 big-endian bytes each. For every ratio, in order, OUT_FILE
gets one byte per id: 1 if the real SDK sampler (opentelemetry-sdk, pinned in
tests/requirements.txt) returns RECORD_AND_SAMPLE, else 0.
"""

import sys

from opentelemetry.sdk.trace.sampling import Decision, TraceIdRatioBased


def main() -> None:
    ids_file, out_file, *ratios = sys.argv[1:]
    with open(ids_file, "rb") as f:
        data = f.read()
    ids = [int.from_bytes(data[i : i + 16], "big") for i in range(0, len(data), 16)]
    with open(out_file, "wb") as out:
        for ratio in ratios:
            should_sample = TraceIdRatioBased(float(ratio)).should_sample
            sampled = Decision.RECORD_AND_SAMPLE
            out.write(
                bytes(should_sample(None, i, "span").decision is sampled for i in ids)
            )


if __name__ == "__main__":
    main()
