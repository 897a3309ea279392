//! The `env.proxy_*` imports of proxy-wasm ABI 0.2.1 (plus the three 0.1.0 leftovers Envoy
//! still offers), answered the way Envoy answers them. Sources: `proxy-wasm-cpp-host`
//! `src/exports.cc` (argument checks, memory handling) and Envoy
//! `source/extensions/common/wasm/context.cc` (maps per phase, properties, metrics, call-outs).

use crate::abi::{
    self, BufferType, LogLevel, MapType, MetricKind, Status, StreamType, decode_pairs, encode_pairs,
};
use crate::callout::{CallOut, Scheduled};
use crate::guest::{Call, Ctx, Fail, copy_out, host_call, read, read_string, write_u32, write_u64};
use crate::headers::HeaderMap;
use crate::state::{GrpcCall, LocalResponse, State};
use std::time::Duration;
use wasmtime::Linker;

/// Every `env` function this host implements.
pub const IMPORTS: &[&str] = &[
    "proxy_log",
    "proxy_get_log_level",
    "proxy_get_current_time_nanoseconds",
    "proxy_set_tick_period_milliseconds",
    "proxy_get_buffer_bytes",
    "proxy_set_buffer_bytes",
    "proxy_get_buffer_status",
    "proxy_get_header_map_pairs",
    "proxy_set_header_map_pairs",
    "proxy_get_header_map_value",
    "proxy_replace_header_map_value",
    "proxy_remove_header_map_value",
    "proxy_add_header_map_value",
    "proxy_get_header_map_size",
    "proxy_get_property",
    "proxy_set_property",
    "proxy_get_shared_data",
    "proxy_set_shared_data",
    "proxy_register_shared_queue",
    "proxy_resolve_shared_queue",
    "proxy_dequeue_shared_queue",
    "proxy_enqueue_shared_queue",
    "proxy_continue_stream",
    "proxy_close_stream",
    "proxy_send_local_response",
    "proxy_continue_request",
    "proxy_continue_response",
    "proxy_clear_route_cache",
    "proxy_http_call",
    "proxy_grpc_call",
    "proxy_grpc_stream",
    "proxy_grpc_send",
    "proxy_grpc_cancel",
    "proxy_grpc_close",
    "proxy_get_status",
    "proxy_set_effective_context",
    "proxy_call_foreign_function",
    "proxy_define_metric",
    "proxy_increment_metric",
    "proxy_record_metric",
    "proxy_get_metric",
    "proxy_done",
];

type R = wasmtime::Result<i32>;

/// Registers every `env` import.
pub(crate) fn link(l: &mut Linker<State>) -> wasmtime::Result<()> {
    link_general(l)?;
    link_maps(l)?;
    link_shared(l)?;
    link_streams(l)?;
    link_calls(l)?;
    link_metrics(l)
}

fn link_general(l: &mut Linker<State>) -> wasmtime::Result<()> {
    l.func_wrap(
        "env",
        "proxy_log",
        |mut c: Ctx<'_>, level: i32, ptr: i32, len: i32| -> R {
            host_call(&mut c, "proxy_log", |c, call| {
                call.key(c, &[])?;
                let level = LogLevel::from_abi(level).ok_or(Status::BadArgument)?;
                let message = read_string(c, ptr, len)?;
                c.data_mut().log(level, message);
                Ok(())
            })
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_log_level",
        |mut c: Ctx<'_>, ret: i32| -> R {
            host_call(&mut c, "proxy_get_log_level", |c, call| {
                call.key(c, &[])?;
                let level = c.data().options.log_level.to_abi();
                write_u32(c, ret, level as u32)
            })
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        |mut c: Ctx<'_>, ret: i32| -> R {
            host_call(&mut c, "proxy_get_current_time_nanoseconds", |c, call| {
                call.key(c, &[])?;
                let now = c.data().now;
                write_u64(c, ret, now)
            })
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_set_tick_period_milliseconds",
        |mut c: Ctx<'_>, period: i32| -> R {
            host_call(&mut c, "proxy_set_tick_period_milliseconds", |c, call| {
                call.key(c, &[])?;
                // Envoy sets the timer of the VM's root context, whichever context asks.
                let state = c.data_mut();
                let period = period as u32;
                state.tick_period_ms = period;
                state.next_tick = (period > 0).then(|| state.now + u64::from(period) * 1_000_000);
                Ok(())
            })
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_property",
        |mut c: Ctx<'_>, path_ptr: i32, path_len: i32, ret_ptr: i32, ret_len: i32| -> R {
            host_call(&mut c, "proxy_get_property", |c, call| {
                let path = read(c, path_ptr, path_len)?;
                call.key(c, &path)?;
                let value = property(c.data_mut(), &path)?;
                copy_out(c, &value, ret_ptr, ret_len)
            })
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_set_property",
        |mut c: Ctx<'_>, path_ptr: i32, path_len: i32, value_ptr: i32, value_len: i32| -> R {
            host_call(&mut c, "proxy_set_property", |c, call| {
                let path = read(c, path_ptr, path_len)?;
                let value = read(c, value_ptr, value_len)?;
                call.key(c, &path)?;
                // Envoy keeps it as filter state `wasm.<path>` on the stream; a root context has
                // no stream, hence NotFound.
                let stream = c.data_mut().stream().ok_or(Status::NotFound)?;
                stream.filter_state.insert(path, value);
                Ok(())
            })
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_set_effective_context",
        |mut c: Ctx<'_>, id: i32| -> R {
            host_call(&mut c, "proxy_set_effective_context", |c, call| {
                call.key(c, &[])?;
                let id = id as u32;
                if !c.data().has_context(id) {
                    return Err(Status::BadArgument.into());
                }
                c.data_mut().effective = Some(id);
                Ok(())
            })
        },
    )?;
    l.func_wrap("env", "proxy_done", |mut c: Ctx<'_>| -> R {
        host_call(&mut c, "proxy_done", |c, call| {
            call.key(c, &[])?;
            // Envoy: only a root context whose on_done answered false may call it.
            let state = c.data_mut();
            if state.done_called == 0 {
                return Err(Status::NotFound.into());
            }
            state.done_called += 1;
            Ok(())
        })
    })?;
    l.func_wrap(
        "env",
        "proxy_call_foreign_function",
        |mut c: Ctx<'_>,
         name_ptr: i32,
         name_len: i32,
         args_ptr: i32,
         args_len: i32,
         ret_ptr: i32,
         ret_len: i32|
         -> R {
            host_call(&mut c, "proxy_call_foreign_function", |c, call| {
                let name = read_string(c, name_ptr, name_len)?;
                let args = read(c, args_ptr, args_len)?;
                call.key(c, name.as_bytes())?;
                let function = c
                    .data_mut()
                    .foreign
                    .get_mut(&name)
                    .ok_or(Status::NotFound)?;
                let result = function(&args)?;
                copy_out(c, &result, ret_ptr, ret_len)
            })
        },
    )?;
    Ok(())
}

/// A write to one header map entry.
type MapWrite = fn(&mut HeaderMap, &[u8], &[u8]);

/// Which map a call may read or write now, as Envoy decides it.
fn header_map(state: &mut State, map: MapType, write: bool) -> Result<&mut HeaderMap, Status> {
    match map {
        MapType::HttpCallResponseHeaders | MapType::HttpCallResponseTrailers => {
            // Envoy's getMap has no case for them: read-only, and only while a response (not a
            // reset) is being delivered.
            let (headers, _, trailers) = state
                .delivery
                .call_response
                .as_mut()
                .filter(|_| !write)
                .ok_or(Status::BadArgument)?;
            Ok(if map == MapType::HttpCallResponseHeaders {
                headers
            } else {
                trailers
            })
        }
        MapType::GrpcReceiveInitialMetadata => state
            .delivery
            .grpc_initial
            .as_mut()
            .filter(|_| !write)
            .ok_or(Status::BadArgument),
        MapType::GrpcReceiveTrailingMetadata => state
            .delivery
            .grpc_trailing
            .as_mut()
            .filter(|_| !write)
            .ok_or(Status::BadArgument),
        _ => {
            let stream = state.stream().ok_or(Status::BadArgument)?;
            let live = stream.live.contains(&map);
            if stream.access_log {
                if write {
                    return Err(Status::BadArgument);
                }
            } else if !live {
                // Envoy drops its pointer to a map once the filter returned Continue for it.
                return Err(Status::BadArgument);
            }
            Ok(stream.map_mut(map))
        }
    }
}

fn map_type(value: i32) -> Result<MapType, Fail> {
    MapType::from_abi(value).ok_or(Fail::Status(Status::BadArgument))
}

fn link_maps(l: &mut Linker<State>) -> wasmtime::Result<()> {
    l.func_wrap(
        "env",
        "proxy_get_header_map_value",
        |mut c: Ctx<'_>, map: i32, key_ptr: i32, key_len: i32, ret_ptr: i32, ret_len: i32| -> R {
            host_call(&mut c, "proxy_get_header_map_value", |c, call| {
                let map = map_type(map)?;
                let key = read(c, key_ptr, key_len)?;
                call.key(c, &key)?;
                let state = c.data_mut();
                let in_log = state.stream().is_some_and(|s| s.access_log);
                let value = match header_map(state, map, false) {
                    Ok(headers) => headers.get(&key).map(<[u8]>::to_vec),
                    // In the access-log phase Envoy answers NotFound for a missing map.
                    Err(Status::BadArgument) if in_log => None,
                    Err(status) => return Err(status.into()),
                };
                let value = value.ok_or(Status::NotFound)?;
                copy_out(c, &value, ret_ptr, ret_len)
            })
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        |mut c: Ctx<'_>, map: i32, ret_ptr: i32, ret_len: i32| -> R {
            host_call(&mut c, "proxy_get_header_map_pairs", |c, call| {
                let map = map_type(map)?;
                call.key(c, &[])?;
                // Envoy answers an unavailable map as no pairs.
                let pairs = header_map(c.data_mut(), map, false)
                    .map(|m| m.pairs().clone())
                    .unwrap_or_default();
                let bytes = if pairs.is_empty() {
                    Vec::new()
                } else {
                    encode_pairs(&pairs)
                };
                copy_out(c, &bytes, ret_ptr, ret_len)
            })
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_set_header_map_pairs",
        |mut c: Ctx<'_>, map: i32, ptr: i32, len: i32| -> R {
            host_call(&mut c, "proxy_set_header_map_pairs", |c, call| {
                let map = map_type(map)?;
                let bytes = read(c, ptr, len)?;
                call.key(c, &[])?;
                let pairs = decode_pairs(&bytes).unwrap_or_else(|| {
                    c.data_mut().violation(
                        "proxy_set_header_map_pairs",
                        "malformed pairs (Envoy reads them as none)",
                    );
                    Vec::new()
                });
                header_map(c.data_mut(), map, true)?.set_pairs(pairs);
                Ok(())
            })
        },
    )?;
    // Envoy `addCopy` and `setCopy`.
    let writes: [(&'static str, MapWrite); 2] = [
        ("proxy_add_header_map_value", HeaderMap::add),
        ("proxy_replace_header_map_value", HeaderMap::replace),
    ];
    for (name, write) in writes {
        l.func_wrap(
            "env",
            name,
            move |mut c: Ctx<'_>,
                  map: i32,
                  key_ptr: i32,
                  key_len: i32,
                  value_ptr: i32,
                  value_len: i32|
                  -> R {
                host_call(&mut c, name, |c, call| {
                    let map = map_type(map)?;
                    let (key, value) = (read(c, key_ptr, key_len)?, read(c, value_ptr, value_len)?);
                    call.key(c, &key)?;
                    write(header_map(c.data_mut(), map, true)?, &key, &value);
                    Ok(())
                })
            },
        )?;
    }
    l.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        |mut c: Ctx<'_>, map: i32, key_ptr: i32, key_len: i32| -> R {
            host_call(&mut c, "proxy_remove_header_map_value", |c, call| {
                let map = map_type(map)?;
                let key = read(c, key_ptr, key_len)?;
                call.key(c, &key)?;
                header_map(c.data_mut(), map, true)?.remove(&key);
                Ok(())
            })
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_header_map_size",
        |mut c: Ctx<'_>, map: i32, ret: i32| -> R {
            host_call(&mut c, "proxy_get_header_map_size", |c, call| {
                let map = map_type(map)?;
                call.key(c, &[])?;
                let size = header_map(c.data_mut(), map, true)?.byte_size();
                write_u32(c, ret, abi::len_u32(size))
            })
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_buffer_bytes",
        |mut c: Ctx<'_>, kind: i32, start: i32, length: i32, ret_ptr: i32, ret_len: i32| -> R {
            host_call(&mut c, "proxy_get_buffer_bytes", |c, call| {
                let kind = BufferType::from_abi(kind).ok_or(Status::BadArgument)?;
                call.key(c, &[])?;
                let buffer = buffer(c.data_mut(), kind)?;
                let (start, length) = (start as u32 as usize, length as u32 as usize);
                start.checked_add(length).ok_or(Status::BadArgument)?;
                let end = buffer.len().min(start.saturating_add(length));
                let slice = buffer.get(start..end).unwrap_or_default().to_vec();
                // Envoy copies nothing (and leaves the pointers alone) for an empty slice.
                if slice.is_empty() {
                    return Ok(());
                }
                copy_out(c, &slice, ret_ptr, ret_len)
            })
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_buffer_status",
        |mut c: Ctx<'_>, kind: i32, len_ptr: i32, flags_ptr: i32| -> R {
            host_call(&mut c, "proxy_get_buffer_status", |c, call| {
                let kind = BufferType::from_abi(kind).ok_or(Status::BadArgument)?;
                call.key(c, &[])?;
                let len = buffer(c.data_mut(), kind)?.len();
                write_u32(c, len_ptr, abi::len_u32(len))?;
                write_u32(c, flags_ptr, 0)
            })
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_set_buffer_bytes",
        |mut c: Ctx<'_>, kind: i32, start: i32, length: i32, data_ptr: i32, data_len: i32| -> R {
            host_call(&mut c, "proxy_set_buffer_bytes", |c, call| {
                let kind = BufferType::from_abi(kind).ok_or(Status::BadArgument)?;
                let data = read(c, data_ptr, data_len)?;
                call.key(c, &[])?;
                let body = match kind {
                    BufferType::HttpRequestBody | BufferType::HttpResponseBody => {
                        let stream = c.data_mut().stream().ok_or(Status::NotFound)?;
                        if stream.body_live != Some(kind) {
                            return Err(Status::NotFound.into());
                        }
                        if kind == BufferType::HttpRequestBody {
                            &mut stream.request_body
                        } else {
                            &mut stream.response_body
                        }
                    }
                    // Configuration and call-out buffers are immutable in Envoy.
                    BufferType::VmConfiguration
                    | BufferType::PluginConfiguration
                    | BufferType::HttpCallResponseBody => {
                        return Err(Status::BadArgument.into());
                    }
                    _ => return Err(Status::NotFound.into()),
                };
                splice(body, start as u32 as usize, length as u32 as usize, &data)?;
                Ok(())
            })
        },
    )?;
    Ok(())
}

/// Envoy's `Buffer::copyFrom`: prepend, replace all, or append; nothing else.
fn splice(body: &mut Vec<u8>, start: usize, length: usize, data: &[u8]) -> Result<(), Status> {
    if start == 0 && length == 0 {
        body.splice(0..0, data.iter().copied());
    } else if start == 0 && length >= body.len() {
        *body = data.to_vec();
    } else if start >= body.len() {
        body.extend_from_slice(data);
    } else {
        return Err(Status::BadArgument);
    }
    Ok(())
}

/// The bytes of a buffer as Envoy exposes it now.
fn buffer(state: &mut State, kind: BufferType) -> Result<Vec<u8>, Status> {
    Ok(match kind {
        BufferType::VmConfiguration => state.options.vm_config.clone().unwrap_or_default(),
        BufferType::PluginConfiguration if state.configuring => {
            state.options.plugin_config.clone().unwrap_or_default()
        }
        BufferType::PluginConfiguration => return Err(Status::NotFound),
        BufferType::HttpCallResponseBody => {
            let (_, body, _) = state
                .delivery
                .call_response
                .as_ref()
                .ok_or(Status::NotFound)?;
            body.clone()
        }
        BufferType::GrpcReceiveBuffer => state.delivery.grpc_message.clone().unwrap_or_default(),
        BufferType::HttpRequestBody => state
            .stream()
            .map(|s| s.request_body.clone())
            .unwrap_or_default(),
        BufferType::HttpResponseBody => state
            .stream()
            .map(|s| s.response_body.clone())
            .unwrap_or_default(),
        BufferType::DownstreamData | BufferType::UpstreamData | BufferType::CallData => Vec::new(),
    })
}

/// `proxy_get_property`: plugin attributes, the stream's request/response attributes and filter
/// state, then what the test set. Values are serialized as Envoy does: strings as bytes,
/// integers as 8-byte little-endian.
fn property(state: &mut State, path: &[u8]) -> Result<Vec<u8>, Status> {
    let parts: Vec<&[u8]> = path.split(|b| *b == 0).collect();
    let options = &state.options;
    match parts.as_slice() {
        [b"plugin_name"] => return Ok(options.plugin_name.as_bytes().to_vec()),
        [b"plugin_root_id"] => return Ok(options.root_id.as_bytes().to_vec()),
        [b"plugin_vm_id"] => return Ok(options.vm_id.as_bytes().to_vec()),
        _ => {}
    }
    let vm_value = options.properties.get(path).cloned();
    if let Some(stream) = state.stream() {
        let header = |map: &HeaderMap, name: &[u8]| map.get(name).map(<[u8]>::to_vec);
        let request = &stream.request_headers;
        let found = match parts.as_slice() {
            [b"request", b"path"] => header(request, b":path"),
            [b"request", b"url_path"] => header(request, b":path")
                .map(|p| p.split(|b| *b == b'?').next().unwrap_or_default().to_vec()),
            [b"request", b"host"] => header(request, b":authority"),
            [b"request", b"scheme"] => header(request, b":scheme"),
            [b"request", b"method"] => header(request, b":method"),
            [b"request", b"id"] => header(request, b"x-request-id"),
            [b"request", b"headers", name] => header(request, name),
            [b"response", b"code"] => header(&stream.response_headers, b":status")
                .and_then(|s| String::from_utf8(s).ok()?.parse::<i64>().ok())
                .map(|code| code.to_le_bytes().to_vec()),
            [b"response", b"headers", name] => header(&stream.response_headers, name),
            [name] => stream.filter_state.get(*name).cloned(),
            _ => None,
        };
        if let Some(value) = found.or_else(|| stream.properties.get(path).cloned()) {
            return Ok(value);
        }
    }
    vm_value.ok_or(Status::NotFound)
}

fn link_shared(l: &mut Linker<State>) -> wasmtime::Result<()> {
    l.func_wrap(
        "env",
        "proxy_get_shared_data",
        |mut c: Ctx<'_>,
         key_ptr: i32,
         key_len: i32,
         ret_ptr: i32,
         ret_len: i32,
         cas_ptr: i32|
         -> R {
            host_call(&mut c, "proxy_get_shared_data", |c, call| {
                let key = read(c, key_ptr, key_len)?;
                call.key(c, &key)?;
                let state = c.data();
                let (value, cas) = state
                    .process
                    .with(|p| p.get_shared_data(&state.options.vm_id, &key))?;
                copy_out(c, &value, ret_ptr, ret_len)?;
                write_u32(c, cas_ptr, cas)
            })
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_set_shared_data",
        |mut c: Ctx<'_>,
         key_ptr: i32,
         key_len: i32,
         value_ptr: i32,
         value_len: i32,
         cas: i32|
         -> R {
            host_call(&mut c, "proxy_set_shared_data", |c, call| {
                let (key, value) = (read(c, key_ptr, key_len)?, read(c, value_ptr, value_len)?);
                call.key(c, &key)?;
                let state = c.data();
                state
                    .process
                    .with(|p| p.set_shared_data(&state.options.vm_id, &key, &value, cas as u32))?;
                Ok(())
            })
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_register_shared_queue",
        |mut c: Ctx<'_>, name_ptr: i32, name_len: i32, ret: i32| -> R {
            host_call(&mut c, "proxy_register_shared_queue", |c, call| {
                let name = read(c, name_ptr, name_len)?;
                call.key(c, &name)?;
                let state = c.data();
                let context = state.context();
                let token = state
                    .process
                    .with(|p| p.register_queue(&state.options.vm_id, &name, state.vm, context));
                write_u32(c, ret, token)
            })
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_resolve_shared_queue",
        |mut c: Ctx<'_>, vm_ptr: i32, vm_len: i32, name_ptr: i32, name_len: i32, ret: i32| -> R {
            host_call(&mut c, "proxy_resolve_shared_queue", |c, call| {
                let vm_id = read_string(c, vm_ptr, vm_len)?;
                let name = read(c, name_ptr, name_len)?;
                call.key(c, &name)?;
                let token = c.data().process.with(|p| p.resolve_queue(&vm_id, &name))?;
                write_u32(c, ret, token)
            })
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_enqueue_shared_queue",
        |mut c: Ctx<'_>, token: i32, value_ptr: i32, value_len: i32| -> R {
            host_call(&mut c, "proxy_enqueue_shared_queue", |c, call| {
                let value = read(c, value_ptr, value_len)?;
                call.key(c, &[])?;
                c.data().process.with(|p| p.enqueue(token as u32, &value))?;
                Ok(())
            })
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_dequeue_shared_queue",
        |mut c: Ctx<'_>, token: i32, ret_ptr: i32, ret_len: i32| -> R {
            host_call(&mut c, "proxy_dequeue_shared_queue", |c, call| {
                call.key(c, &[])?;
                let value = c.data().process.with(|p| p.dequeue(token as u32))?;
                copy_out(c, &value, ret_ptr, ret_len)
            })
        },
    )?;
    Ok(())
}

fn stream_type(value: i32) -> Result<StreamType, Fail> {
    StreamType::from_abi(value).ok_or(Fail::Status(Status::BadArgument))
}

/// Envoy's `continueStream`: resumes the stream and drops its pointers to that direction's maps.
fn continue_stream(c: &mut Ctx<'_>, kind: StreamType) -> Result<(), Fail> {
    if kind == StreamType::Upstream {
        return Err(Status::Unimplemented.into());
    }
    if let Some(stream) = c.data_mut().stream() {
        stream.continued.push(kind);
        match kind {
            StreamType::Request => {
                stream.request_paused = false;
                stream.live.remove(&MapType::RequestHeaders);
                stream.live.remove(&MapType::RequestTrailers);
            }
            StreamType::Response => {
                stream.response_paused = false;
                stream.live.remove(&MapType::ResponseHeaders);
                stream.live.remove(&MapType::ResponseTrailers);
            }
            _ => {}
        }
    }
    Ok(())
}

fn link_streams(l: &mut Linker<State>) -> wasmtime::Result<()> {
    l.func_wrap(
        "env",
        "proxy_continue_stream",
        |mut c: Ctx<'_>, kind: i32| -> R {
            host_call(&mut c, "proxy_continue_stream", |c, call| {
                let kind = stream_type(kind)?;
                call.key(c, &[])?;
                continue_stream(c, kind)
            })
        },
    )?;
    l.func_wrap("env", "proxy_continue_request", |mut c: Ctx<'_>| -> R {
        host_call(&mut c, "proxy_continue_request", |c, call| {
            call.key(c, &[])?;
            continue_stream(c, StreamType::Request)
        })
    })?;
    l.func_wrap("env", "proxy_continue_response", |mut c: Ctx<'_>| -> R {
        host_call(&mut c, "proxy_continue_response", |c, call| {
            call.key(c, &[])?;
            continue_stream(c, StreamType::Response)
        })
    })?;
    l.func_wrap("env", "proxy_clear_route_cache", |mut c: Ctx<'_>| -> R {
        host_call(&mut c, "proxy_clear_route_cache", |c, call| {
            call.key(c, &[])
        })
    })?;
    l.func_wrap(
        "env",
        "proxy_close_stream",
        |mut c: Ctx<'_>, kind: i32| -> R {
            host_call(&mut c, "proxy_close_stream", |c, call| {
                let kind = stream_type(kind)?;
                call.key(c, &[])?;
                if let Some(stream) = c.data_mut().stream() {
                    stream.closed.push(kind);
                }
                Ok(())
            })
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_send_local_response",
        |mut c: Ctx<'_>,
         status: i32,
         details_ptr: i32,
         details_len: i32,
         body_ptr: i32,
         body_len: i32,
         headers_ptr: i32,
         headers_len: i32,
         grpc_status: i32|
         -> R {
            host_call(&mut c, "proxy_send_local_response", |c, call| {
                let details = read(c, details_ptr, details_len)?;
                let body = read(c, body_ptr, body_len)?;
                let headers = read(c, headers_ptr, headers_len)?;
                call.key(c, &[])?;
                let headers = decode_pairs(&headers).unwrap_or_default();
                // Envoy sends it through the decoder callbacks; a root context has none.
                if let Some(stream) = c.data_mut().stream() {
                    stream.local_response = Some(LocalResponse {
                        status: status as u32,
                        details,
                        body,
                        headers: HeaderMap::from_pairs(headers),
                        grpc_status,
                    });
                }
                Ok(())
            })
        },
    )?;
    Ok(())
}

fn link_calls(l: &mut Linker<State>) -> wasmtime::Result<()> {
    l.func_wrap(
        "env",
        "proxy_http_call",
        |mut c: Ctx<'_>,
         cluster_ptr: i32,
         cluster_len: i32,
         headers_ptr: i32,
         headers_len: i32,
         body_ptr: i32,
         body_len: i32,
         trailers_ptr: i32,
         trailers_len: i32,
         timeout_ms: i32,
         token_ptr: i32|
         -> R {
            host_call(&mut c, "proxy_http_call", |c, call| {
                let cluster = read_string(c, cluster_ptr, cluster_len)?;
                let headers = read(c, headers_ptr, headers_len)?;
                let body = read(c, body_ptr, body_len)?;
                let trailers = read(c, trailers_ptr, trailers_len)?;
                // Envoy writes the token slot first, to check the pointer.
                write_u32(c, token_ptr, 0)?;
                call.key(c, cluster.as_bytes())?;
                http_call(c, cluster, &headers, body, &trailers, timeout_ms, token_ptr)
            })
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_grpc_call",
        |mut c: Ctx<'_>,
         service_ptr: i32,
         service_len: i32,
         name_ptr: i32,
         name_len: i32,
         method_ptr: i32,
         method_len: i32,
         metadata_ptr: i32,
         metadata_len: i32,
         message_ptr: i32,
         message_len: i32,
         _timeout_ms: i32,
         token_ptr: i32|
         -> R {
            host_call(&mut c, "proxy_grpc_call", |c, call| {
                let service = read(c, service_ptr, service_len)?;
                let mut grpc = grpc_open(
                    c,
                    &service,
                    (name_ptr, name_len),
                    (method_ptr, method_len),
                    (metadata_ptr, metadata_len),
                )?;
                grpc.messages.push(read(c, message_ptr, message_len)?);
                call.key(c, &service)?;
                register_grpc(c, grpc, false, token_ptr)
            })
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_grpc_stream",
        |mut c: Ctx<'_>,
         service_ptr: i32,
         service_len: i32,
         name_ptr: i32,
         name_len: i32,
         method_ptr: i32,
         method_len: i32,
         metadata_ptr: i32,
         metadata_len: i32,
         token_ptr: i32|
         -> R {
            host_call(&mut c, "proxy_grpc_stream", |c, call| {
                let service = read(c, service_ptr, service_len)?;
                let grpc = grpc_open(
                    c,
                    &service,
                    (name_ptr, name_len),
                    (method_ptr, method_len),
                    (metadata_ptr, metadata_len),
                )?;
                call.key(c, &service)?;
                register_grpc(c, grpc, true, token_ptr)
            })
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_grpc_send",
        |mut c: Ctx<'_>, token: i32, message_ptr: i32, message_len: i32, _end_stream: i32| -> R {
            host_call(&mut c, "proxy_grpc_send", |c, call| {
                let message = read(c, message_ptr, message_len)?;
                call.key(c, &[])?;
                let token = token as u32;
                if token % 2 == 1 {
                    return Err(Status::BadArgument.into());
                }
                let grpc = open_grpc(c.data_mut(), token)?;
                grpc.messages.push(message);
                Ok(())
            })
        },
    )?;
    for name in ["proxy_grpc_cancel", "proxy_grpc_close"] {
        l.func_wrap("env", name, move |mut c: Ctx<'_>, token: i32| -> R {
            host_call(&mut c, name, |c, call| {
                call.key(c, &[])?;
                open_grpc(c.data_mut(), token as u32)?.closed = true;
                Ok(())
            })
        })?;
    }
    l.func_wrap(
        "env",
        "proxy_get_status",
        |mut c: Ctx<'_>, code_ptr: i32, ret_ptr: i32, ret_len: i32| -> R {
            host_call(&mut c, "proxy_get_status", |c, call| {
                call.key(c, &[])?;
                let (code, message) = c.data().delivery.grpc_status.clone().unwrap_or_default();
                write_u32(c, code_ptr, code)?;
                copy_out(c, &message, ret_ptr, ret_len)
            })
        },
    )?;
    Ok(())
}

/// Stores a new gRPC call (odd tokens) or stream (even tokens), numbered as Envoy does.
fn register_grpc(
    c: &mut Ctx<'_>,
    mut grpc: GrpcCall,
    stream: bool,
    token_ptr: i32,
) -> Result<(), Fail> {
    let state = c.data_mut();
    let last = if stream {
        &mut state.last_grpc_stream
    } else {
        &mut state.last_grpc_call
    };
    *last = if *last == 0 && !stream { 1 } else { *last + 2 };
    grpc.token = *last;
    let token = grpc.token;
    state.grpc.insert(token, grpc);
    write_u32(c, token_ptr, token)
}

fn open_grpc(state: &mut State, token: u32) -> Result<&mut GrpcCall, Status> {
    state
        .grpc
        .get_mut(&token)
        .filter(|g| !g.closed)
        .ok_or(Status::NotFound)
}

/// Envoy parses `service` as a `GrpcService` proto, else as a cluster name, and answers
/// `ParseFailure` for an unknown cluster. This host knows no protos: the service must be the
/// name of a configured cluster.
fn grpc_open(
    c: &mut Ctx<'_>,
    service: &[u8],
    name: (i32, i32),
    method: (i32, i32),
    metadata: (i32, i32),
) -> Result<GrpcCall, Fail> {
    let service_name = read_string(c, name.0, name.1)?;
    let method = read_string(c, method.0, method.1)?;
    let metadata = read(c, metadata.0, metadata.1)?;
    let known = std::str::from_utf8(service)
        .is_ok_and(|s| c.data().options.clusters.iter().any(|k| k == s));
    if !known {
        return Err(Status::ParseFailure.into());
    }
    Ok(GrpcCall {
        token: 0,
        service: service.to_vec(),
        service_name,
        method,
        metadata: HeaderMap::from_pairs(decode_pairs(&metadata).unwrap_or_default()),
        messages: Vec::new(),
        closed: false,
    })
}

/// Envoy's `Context::httpCall` checks, then the call is recorded (and scheduled when a
/// responder is installed).
fn http_call(
    c: &mut Ctx<'_>,
    cluster: String,
    headers: &[u8],
    body: Vec<u8>,
    trailers: &[u8],
    timeout_ms: i32,
    token_ptr: i32,
) -> Result<(), Fail> {
    let state = c.data_mut();
    if timeout_ms < 0 {
        return Err(Status::BadArgument.into());
    }
    if !state.options.clusters.contains(&cluster) {
        return Err(Status::BadArgument.into());
    }
    let headers = HeaderMap::from_pairs(decode_pairs(headers).unwrap_or_else(|| {
        state.violation("proxy_http_call", "malformed header pairs");
        Vec::new()
    }));
    for required in [":path", ":method", ":authority"] {
        if headers.get(required).is_none() {
            state.violation(
                "proxy_http_call",
                format!("no `{required}` header: Envoy answers BadArgument"),
            );
            return Err(Status::BadArgument.into());
        }
    }
    state.last_call_token = state.last_call_token.wrapping_add(1).max(1);
    let call = CallOut {
        token: state.last_call_token,
        cluster,
        headers,
        body,
        trailers: HeaderMap::from_pairs(decode_pairs(trailers).unwrap_or_default()),
        timeout: (timeout_ms > 0).then(|| Duration::from_millis(timeout_ms as u64)),
        dispatched_at: state.now,
        context_id: state.context(),
    };
    if let Some(responder) = state.responder.as_mut() {
        let (delay, reply) = responder(&call);
        let at = state.now + u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
        state.scheduled.push(Scheduled {
            at,
            token: call.token,
            reply,
        });
    }
    let token = call.token;
    state.calls.insert(token, call);
    write_u32(c, token_ptr, token)
}

fn link_metrics(l: &mut Linker<State>) -> wasmtime::Result<()> {
    l.func_wrap(
        "env",
        "proxy_define_metric",
        |mut c: Ctx<'_>, kind: i32, name_ptr: i32, name_len: i32, ret: i32| -> R {
            host_call(&mut c, "proxy_define_metric", |c, call| {
                let name = read_string(c, name_ptr, name_len)?;
                call.key(c, name.as_bytes())?;
                let kind = MetricKind::from_abi(kind).ok_or(Status::BadArgument)?;
                let id = define_metric(c.data_mut(), kind, name);
                write_u32(c, ret, id)
            })
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_increment_metric",
        |mut c: Ctx<'_>, id: i32, offset: i64| -> R {
            host_call(&mut c, "proxy_increment_metric", |c, call| {
                let name = metric_name(c, call, id, true)?;
                let state = c.data_mut();
                match state.process.with(|p| p.increment(&name, offset)) {
                    Ok(None) => Ok(()),
                    Ok(Some(problem)) => {
                        state.violation("proxy_increment_metric", problem);
                        Ok(())
                    }
                    Err(status) => {
                        let why =
                            format!("`{name}` incremented by {offset}: Envoy answers {status:?}");
                        state.violation("proxy_increment_metric", why);
                        Err(status.into())
                    }
                }
            })
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_record_metric",
        |mut c: Ctx<'_>, id: i32, value: i64| -> R {
            host_call(&mut c, "proxy_record_metric", |c, call| {
                let name = metric_name(c, call, id, false)?;
                c.data().process.with(|p| p.record(&name, value as u64))?;
                Ok(())
            })
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_metric",
        |mut c: Ctx<'_>, id: i32, ret: i32| -> R {
            host_call(&mut c, "proxy_get_metric", |c, call| {
                let name = metric_name(c, call, id, true)?;
                let value = c.data().process.with(|p| p.get_metric(&name))?;
                write_u64(c, ret, value)
            })
        },
    )?;
    Ok(())
}

/// Envoy's ids: a per-kind sequence stepping by 4, the kind in the low two bits.
fn define_metric(state: &mut State, kind: MetricKind, name: String) -> u32 {
    let slot = match kind {
        MetricKind::Counter => 0,
        MetricKind::Gauge => 1,
        MetricKind::Histogram => 2,
    };
    let last = state.last_metric_id.get_mut(slot).map_or(0, |last| {
        *last += 1;
        *last
    });
    let id = last * 4 + kind.id_tag();
    state.process.with(|p| p.define_metric(kind, &name));
    state.metric_ids.insert(id, (kind, name));
    id
}

/// The name behind a metric id; Envoy answers an unknown counter or gauge id `NotFound` and a
/// histogram id, where the call has no histogram case, `BadArgument`.
fn metric_name(
    c: &mut Ctx<'_>,
    call: &mut Call,
    id: i32,
    histogram_is_bad: bool,
) -> Result<String, Fail> {
    let id = id as u32;
    let known = c.data().metric_ids.get(&id).map(|(_, name)| name.clone());
    call.key(c, known.as_deref().unwrap_or_default().as_bytes())?;
    if histogram_is_bad && id & 3 == 2 {
        return Err(Status::BadArgument.into());
    }
    known.ok_or(Fail::Status(Status::NotFound))
}
