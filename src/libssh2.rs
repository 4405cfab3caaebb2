//! Small facts about libssh2 that several parts rely on: its error codes by name, its
//! millisecond timeouts, what the linked library supports, and the one call ssh2 does not
//! wrap (the originator of an accepted forwarded channel). One of the two modules allowed
//! `unsafe` (with wake.rs): one FFI call, commented. See docs/libssh2.md.

use std::time::Duration;

pub use libssh2_sys::{
    LIBSSH2_ERROR_AUTHENTICATION_FAILED, LIBSSH2_ERROR_BANNER_RECV, LIBSSH2_ERROR_EAGAIN,
    LIBSSH2_ERROR_FILE, LIBSSH2_ERROR_INVAL, LIBSSH2_ERROR_KEX_FAILURE,
    LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED, LIBSSH2_ERROR_REQUEST_DENIED,
    LIBSSH2_ERROR_SOCKET_DISCONNECT, LIBSSH2_ERROR_SOCKET_RECV, LIBSSH2_ERROR_SOCKET_TIMEOUT,
    LIBSSH2_ERROR_TIMEOUT,
};

use crate::error::{Error, Result};

/// The libssh2 error number of a session-level error (`None` for SFTP errors).
pub fn code(error: &ssh2::Error) -> Option<i32> {
    match error.code() {
        ssh2::ErrorCode::Session(code) => Some(code),
        ssh2::ErrorCode::SFTP(_) => None,
    }
}

/// True when `error` is libssh2's `code`.
pub fn is(error: &ssh2::Error, code: i32) -> bool {
    self::code(error) == Some(code)
}

/// Who connected to the relay's port for the forwarded channel accepted last on `session`
/// (the originator address and port of RFC 4254 7.2, which the relay reports in every
/// `forwarded-tcpip` open). Vendored patch 0005 keeps it; stock libssh2 drops it.
pub fn accepted_originator(session: &ssh2::Session) -> Option<(String, u16)> {
    let mut raw = session.raw();
    let mut host: *const std::os::raw::c_char = std::ptr::null();
    let mut port: std::os::raw::c_uint = 0;
    // SAFETY: `raw` is the session's live LIBSSH2_SESSION, locked by ssh2 for this call;
    // the function only reads it and sets `host` to a NUL-terminated buffer inside it,
    // which is copied out below while the lock is still held.
    let rc = unsafe {
        libssh2_sys::libssh2_channel_forward_accepted_originator(&mut *raw, &mut host, &mut port)
    };
    if rc != 0 || host.is_null() {
        return None;
    }
    // SAFETY: on success `host` points to a NUL-terminated string of at most 255 bytes in
    // the session, unchanged while `raw` is held.
    let text = unsafe { std::ffi::CStr::from_ptr(host) }
        .to_string_lossy()
        .into_owned();
    Some((text, u16::try_from(port).unwrap_or(0)))
}

/// A duration as libssh2's millisecond timeout, saturating instead of wrapping.
pub fn duration_ms(d: Duration) -> u32 {
    d.as_millis().min(u128::from(u32::MAX)) as u32
}

/// The cipher names the linked libssh2 can negotiate.
pub fn supported_ciphers() -> Result<Vec<String>> {
    let session = ssh2::Session::new()
        .map_err(|e| Error::Local(format!("cannot create ssh session: {e}")))?;
    let supported = session
        .supported_algs(ssh2::MethodType::CryptCs)
        .map_err(|e| Error::Local(format!("cannot list ciphers: {e}")))?;
    Ok(supported.into_iter().map(str::to_string).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_saturate() {
        assert_eq!(duration_ms(Duration::from_millis(1500)), 1500);
        assert_eq!(duration_ms(Duration::from_secs(u64::MAX)), u32::MAX);
    }
}
