//! Access to the module's linear memory from a host call, and the envelope every host call
//! runs in: count it, remember it, apply injected failures, turn statuses into the returned
//! code and invalid pointers into violations.

use crate::abi::Status;
use crate::state::{HostCall, State};
use wasmtime::Caller;

/// The caller of a host function.
pub(crate) type Ctx<'a> = Caller<'a, State>;

/// Why a host call did not answer `Ok`.
pub(crate) enum Fail {
    /// Answer this status.
    Status(Status),
    /// Trap the module (an error inside a reentrant call, or `proc_exit`).
    Trap(wasmtime::Error),
}

impl From<Status> for Fail {
    fn from(status: Status) -> Self {
        Self::Status(status)
    }
}

impl From<wasmtime::Error> for Fail {
    fn from(error: wasmtime::Error) -> Self {
        Self::Trap(error)
    }
}

/// Bookkeeping of one host call in progress.
pub(crate) struct Call {
    name: &'static str,
    key: Vec<u8>,
    injected: bool,
}

impl Call {
    /// Names the call's main argument and applies any failure the test injected for it.
    pub fn key(&mut self, c: &mut Ctx<'_>, key: &[u8]) -> Result<(), Fail> {
        self.key = key.iter().copied().take(64).collect();
        match c.data_mut().injected(self.name, key) {
            Some(status) => {
                self.injected = true;
                Err(Fail::Status(status))
            }
            None => Ok(()),
        }
    }
}

impl Call {
    /// Notes a detail for diagnostics, without applying injections.
    pub fn note(&mut self, detail: &[u8]) {
        self.key = detail.iter().copied().take(64).collect();
    }
}

/// Runs one host call: the body answers `Ok(())` for `Status::Ok`.
pub(crate) fn host_call(
    c: &mut Ctx<'_>,
    name: &'static str,
    body: impl FnOnce(&mut Ctx<'_>, &mut Call) -> Result<(), Fail>,
) -> wasmtime::Result<i32> {
    let mut call = Call {
        name,
        key: Vec::new(),
        injected: false,
    };
    let outcome = body(c, &mut call);
    let status = match outcome {
        Ok(()) => Status::Ok,
        Err(Fail::Status(status)) => status,
        Err(Fail::Trap(error)) => {
            c.data_mut().remember(HostCall {
                name,
                key: call.key,
                status: Status::InternalFailure,
                injected: false,
            });
            return Err(error);
        }
    };
    if status == Status::InvalidMemoryAccess && !call.injected {
        c.data_mut()
            .violation(name, "a pointer or size is outside the module's memory");
    }
    c.data_mut().remember(HostCall {
        name,
        key: call.key,
        status,
        injected: call.injected,
    });
    Ok(status.code())
}

fn range(ptr: i32, len: i32) -> Option<std::ops::Range<usize>> {
    let start = usize::try_from(ptr as u32).ok()?;
    let len = usize::try_from(len as u32).ok()?;
    Some(start..start.checked_add(len)?)
}

/// Copies `len` bytes at `ptr` out of the module's memory.
pub(crate) fn read(c: &Ctx<'_>, ptr: i32, len: i32) -> Result<Vec<u8>, Fail> {
    if len == 0 {
        return Ok(Vec::new());
    }
    let memory = c.data().memory.ok_or(Status::InternalFailure)?;
    let bytes = range(ptr, len)
        .and_then(|r| memory.data(c).get(r))
        .ok_or(Status::InvalidMemoryAccess)?;
    Ok(bytes.to_vec())
}

/// Copies `len` bytes at `ptr` as a lossy string.
pub(crate) fn read_string(c: &Ctx<'_>, ptr: i32, len: i32) -> Result<String, Fail> {
    Ok(String::from_utf8_lossy(&read(c, ptr, len)?).into_owned())
}

/// Writes `bytes` at `ptr` in the module's memory.
pub(crate) fn write(c: &mut Ctx<'_>, ptr: i32, bytes: &[u8]) -> Result<(), Fail> {
    let memory = c.data().memory.ok_or(Status::InternalFailure)?;
    let target = range(
        ptr,
        i32::try_from(bytes.len()).map_err(|_| Status::BadArgument)?,
    )
    .and_then(|r| memory.data_mut(&mut *c).get_mut(r))
    .ok_or(Status::InvalidMemoryAccess)?;
    target.copy_from_slice(bytes);
    Ok(())
}

/// Writes a little-endian `u32` at `ptr`.
pub(crate) fn write_u32(c: &mut Ctx<'_>, ptr: i32, value: u32) -> Result<(), Fail> {
    write(c, ptr, &value.to_le_bytes())
}

/// Writes a little-endian `u64` at `ptr`.
pub(crate) fn write_u64(c: &mut Ctx<'_>, ptr: i32, value: u64) -> Result<(), Fail> {
    write(c, ptr, &value.to_le_bytes())
}

/// Hands `bytes` to the module as Envoy does (`copyToPointerSize`): memory from the module's
/// `proxy_on_memory_allocate`, its address and size written at `ptr_ptr` and `size_ptr`; an
/// empty value is a null pointer and size 0.
pub(crate) fn copy_out(
    c: &mut Ctx<'_>,
    bytes: &[u8],
    ptr_ptr: i32,
    size_ptr: i32,
) -> Result<(), Fail> {
    let size = i32::try_from(bytes.len()).map_err(|_| Status::BadArgument)?;
    let mut address = 0;
    if size > 0 {
        let allocate = c.data().allocate.clone().ok_or(Status::InternalFailure)?;
        address = allocate.call(&mut *c, size)?;
        if address == 0 {
            return Err(Status::InvalidMemoryAccess.into());
        }
        write(c, address, bytes)?;
    }
    write_u32(c, ptr_ptr, address as u32)?;
    write_u32(c, size_ptr, size as u32)
}
