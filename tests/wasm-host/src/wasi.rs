//! The `wasi_snapshot_preview1` calls Envoy offers a proxy-wasm module, made deterministic:
//! `random_get` draws from a seeded generator, `clock_time_get` reads the host's controllable
//! clock, `environ_*` serve the configured environment, `fd_write` on stdout/stderr becomes log
//! lines (info and error, trailing newline removed) and `proc_exit` traps.
//!
//! Like Envoy (`proxy-wasm-cpp-host` `src/exports.cc`): only the realtime clock exists
//! (`ENOTSUP` for the others, so `std::time::Instant` fails in Envoy and here), `fd_read` is
//! `ENOSYS`, `fd_seek`/`fd_close` succeed doing nothing, no arguments.

use crate::abi::LogLevel;
use crate::guest::{Ctx, Fail, host_call, read, write, write_u32, write_u64};
use crate::state::State;
use rand::RngCore;
use wasmtime::Linker;

const MODULE: &str = "wasi_snapshot_preview1";
const ESUCCESS: i32 = 0;
const EBADF: i32 = 8;
const EFAULT: i32 = 21;
const EIO: i32 = 29;
const ENOSYS: i32 = 52;
const ENOTSUP: i32 = 58;

/// Every WASI function this host implements.
pub const IMPORTS: &[&str] = &[
    "fd_write",
    "fd_read",
    "fd_seek",
    "fd_close",
    "fd_fdstat_get",
    "environ_get",
    "environ_sizes_get",
    "args_get",
    "args_sizes_get",
    "clock_time_get",
    "random_get",
    "proc_exit",
];

type R = wasmtime::Result<i32>;

/// Runs a WASI call through the common envelope; an injected status is answered `EIO`, a bad
/// pointer `EFAULT`.
fn wasi_call(
    c: &mut Ctx<'_>,
    name: &'static str,
    body: impl FnOnce(&mut Ctx<'_>) -> Result<i32, Fail>,
) -> R {
    let mut errno = ESUCCESS;
    let status = host_call(c, name, |c, call| {
        call.key(c, &[])?;
        errno = body(c)?;
        if errno != ESUCCESS {
            call.note(format!("errno {errno}").as_bytes());
        }
        Ok(())
    })?;
    Ok(match status {
        0 => errno,
        6 => EFAULT,
        _ => EIO,
    })
}

/// Registers the WASI imports.
pub(crate) fn link(l: &mut Linker<State>) -> wasmtime::Result<()> {
    l.func_wrap(
        MODULE,
        "fd_write",
        |mut c: Ctx<'_>, fd: i32, iovs: i32, len: i32, written: i32| -> R {
            wasi_call(&mut c, "fd_write", |c| {
                let level = match fd {
                    1 => LogLevel::Info,
                    2 => LogLevel::Error,
                    _ => return Ok(EBADF),
                };
                let mut text = Vec::new();
                for i in 0..len {
                    let iov = read(c, iovs.wrapping_add(i.wrapping_mul(8)), 8)?;
                    let word = |at: usize| {
                        iov.get(at..at + 4)
                            .and_then(|w| w.try_into().ok())
                            .map(i32::from_le_bytes)
                    };
                    let (Some(buf), Some(buf_len)) = (word(0), word(4)) else {
                        return Ok(EFAULT);
                    };
                    text.extend(read(c, buf, buf_len)?);
                }
                let count = text.len();
                if text.last() == Some(&b'\n') {
                    text.pop();
                }
                if count > 0 {
                    c.data_mut()
                        .log(level, String::from_utf8_lossy(&text).into_owned());
                }
                write_u32(c, written, count as u32)?;
                Ok(ESUCCESS)
            })
        },
    )?;
    l.func_wrap(
        MODULE,
        "fd_read",
        |mut c: Ctx<'_>, _: i32, _: i32, _: i32, _: i32| -> R {
            wasi_call(&mut c, "fd_read", |_| Ok(ENOSYS))
        },
    )?;
    l.func_wrap(
        MODULE,
        "fd_seek",
        |mut c: Ctx<'_>, _: i32, _: i64, _: i32, _: i32| -> R {
            wasi_call(&mut c, "fd_seek", |_| Ok(ESUCCESS))
        },
    )?;
    l.func_wrap(MODULE, "fd_close", |mut c: Ctx<'_>, _: i32| -> R {
        wasi_call(&mut c, "fd_close", |_| Ok(ESUCCESS))
    })?;
    l.func_wrap(
        MODULE,
        "fd_fdstat_get",
        |mut c: Ctx<'_>, fd: i32, stat: i32| -> R {
            wasi_call(&mut c, "fd_fdstat_get", |c| {
                if fd != 1 && fd != 2 {
                    return Ok(EBADF);
                }
                // filetype 0, flags 0, rights_base = FD_WRITE (64), rights_inheriting 0.
                let mut fdstat = [0u8; 24];
                fdstat[8] = 64;
                write(c, stat, &fdstat)?;
                Ok(ESUCCESS)
            })
        },
    )?;
    l.func_wrap(
        MODULE,
        "environ_sizes_get",
        |mut c: Ctx<'_>, count: i32, size: i32| -> R {
            wasi_call(&mut c, "environ_sizes_get", |c| {
                let env = &c.data().options.env;
                let n = env.len() as u32;
                let bytes: usize = env.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
                write_u32(c, count, n)?;
                write_u32(c, size, bytes as u32)?;
                Ok(ESUCCESS)
            })
        },
    )?;
    l.func_wrap(
        MODULE,
        "environ_get",
        |mut c: Ctx<'_>, array: i32, buf: i32| -> R {
            wasi_call(&mut c, "environ_get", |c| {
                let env = c.data().options.env.clone();
                let (mut slot, mut at) = (array, buf);
                for (key, value) in env {
                    let entry = format!("{key}={value}\0");
                    write_u32(c, slot, at as u32)?;
                    write(c, at, entry.as_bytes())?;
                    at = at.wrapping_add(entry.len() as i32);
                    slot = slot.wrapping_add(4);
                }
                Ok(ESUCCESS)
            })
        },
    )?;
    l.func_wrap(MODULE, "args_get", |mut c: Ctx<'_>, _: i32, _: i32| -> R {
        wasi_call(&mut c, "args_get", |_| Ok(ESUCCESS))
    })?;
    l.func_wrap(
        MODULE,
        "args_sizes_get",
        |mut c: Ctx<'_>, count: i32, size: i32| -> R {
            wasi_call(&mut c, "args_sizes_get", |c| {
                write_u32(c, count, 0)?;
                write_u32(c, size, 0)?;
                Ok(ESUCCESS)
            })
        },
    )?;
    l.func_wrap(
        MODULE,
        "clock_time_get",
        |mut c: Ctx<'_>, id: i32, _precision: i64, ret: i32| -> R {
            wasi_call(&mut c, "clock_time_get", |c| {
                if id != 0 {
                    return Ok(ENOTSUP);
                }
                let now = c.data().now;
                write_u64(c, ret, now)?;
                Ok(ESUCCESS)
            })
        },
    )?;
    l.func_wrap(
        MODULE,
        "random_get",
        |mut c: Ctx<'_>, buf: i32, len: i32| -> R {
            wasi_call(&mut c, "random_get", |c| {
                let mut bytes = vec![0u8; len as u32 as usize];
                c.data_mut().rng.fill_bytes(&mut bytes);
                write(c, buf, &bytes)?;
                Ok(ESUCCESS)
            })
        },
    )?;
    l.func_wrap(
        MODULE,
        "proc_exit",
        |mut c: Ctx<'_>, code: i32| -> wasmtime::Result<()> {
            host_call(&mut c, "proc_exit", |c, call| {
                call.key(c, &[])?;
                Err(Fail::Trap(wasmtime::format_err!(
                    "the module called proc_exit({code})"
                )))
            })?;
            Ok(())
        },
    )?;
    Ok(())
}
