//! Unix users as the system knows them (`/etc/passwd`, LDAP, whatever NSS uses).

/// The name of Unix user `uid` (`getpwuid_r`: /etc/passwd, LDAP, whatever the system uses).
pub fn name_of(uid: u32) -> Option<String> {
    let mut buffer = vec![0 as libc::c_char; 4096];
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is to memory of ours that outlives the call, with its size.
    let status = unsafe {
        libc::getpwuid_r(
            uid,
            &mut entry,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut found,
        )
    };
    if status != 0 || found.is_null() || entry.pw_name.is_null() {
        return None;
    }
    // SAFETY: getpwuid_r succeeded, so pw_name points to a NUL-terminated name in `buffer`.
    let name = unsafe { std::ffi::CStr::from_ptr(entry.pw_name) };
    Some(name.to_string_lossy().into_owned()).filter(|n| plain_name(n))
}

/// A user name fit to record: 1 to 32 of letters, digits, `.`, `_`, `-` (and `$` last, as
/// Samba's machine accounts have it).
pub fn plain_name(name: &str) -> bool {
    let body = name.strip_suffix('$').unwrap_or(name);
    (1..=32).contains(&name.len())
        && body
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// A Unix user's ids and home, as the system knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub uid: u32,
    /// Its primary group.
    pub gid: u32,
    pub home: std::path::PathBuf,
}

/// The user called `name` (`getpwnam_r`), or `None` when there is none (or the name is not a
/// plain one).
pub fn look_up(name: &str) -> Option<Account> {
    use std::os::unix::ffi::OsStrExt;
    if !plain_name(name) {
        return None;
    }
    let c_name = std::ffi::CString::new(name).ok()?;
    let mut buffer = vec![0 as libc::c_char; 4096];
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is to memory of ours that outlives the call, with its size.
    let status = unsafe {
        libc::getpwnam_r(
            c_name.as_ptr(),
            &mut entry,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut found,
        )
    };
    if status != 0 || found.is_null() {
        return None;
    }
    let home = if entry.pw_dir.is_null() {
        std::path::PathBuf::from("/nonexistent")
    } else {
        // SAFETY: getpwnam_r succeeded, so pw_dir points to a NUL-terminated path in `buffer`.
        let dir = unsafe { std::ffi::CStr::from_ptr(entry.pw_dir) };
        std::path::PathBuf::from(std::ffi::OsStr::from_bytes(dir.to_bytes()))
    };
    Some(Account {
        uid: entry.pw_uid,
        gid: entry.pw_gid,
        home,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_found_by_name_and_a_made_up_or_odd_name_is_not() {
        let root = look_up("root").expect("root is a user everywhere");
        assert_eq!((root.uid, root.gid), (0, 0));
        assert_eq!(name_of(0).as_deref(), Some("root"));
        assert_eq!(look_up("no-such-user-clubdeploy-test"), None);
        assert_eq!(look_up("root\0x"), None);
        assert_eq!(look_up("../root"), None);
    }
}
