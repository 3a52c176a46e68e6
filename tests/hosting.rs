//! The host around clubdeploy: what the doctor says of Apache's configuration as seen by the
//! service's own (unprivileged) user.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use crate::helpers::{TestEnv, succeeded};

/// The user the doctor runs as here: nobody, standing in for the service user.
const SERVICE_UID: u32 = 65534;

fn chown_all(path: &Path, uid: u32) {
    succeeded(
        Command::new("chown")
            .args(["-R", &format!("{uid}:{uid}")])
            .arg(path),
    );
}

#[test]
fn the_doctor_names_apache_files_and_logs_in_a_folder_the_service_user_owns() {
    if !rustix::process::geteuid().is_root() {
        eprintln!(
            "SKIPPED the_doctor_names_apache_files_and_logs_in_a_folder_the_service_user_owns: \
             it runs the doctor as another user, which needs root (CI runs as root)"
        );
        return;
    }
    let mut env = TestEnv::new();
    // Apache's main configuration, root's; it names a log and an include in a folder of the
    // service's (the env's own tree, given to the service user below), and others of root's.
    let etc = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        etc.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let main = etc.path().join("apache2.conf");
    let ours = env.root.path().canonicalize().unwrap().join("apache");
    std::fs::create_dir_all(&ours).unwrap();
    std::fs::write(ours.join("extra.conf"), "# put here by the service user\n").unwrap();
    std::fs::write(
        &main,
        format!(
            "ServerRoot {etc:?}\nErrorLog {log:?}\nCustomLog /var/log/apache2/access.log combined\n\
             Include {extra:?}\nIncludeOptional {etc:?}/conf.d/*.conf\n",
            etc = etc.path(),
            log = ours.join("logs/error.log"),
            extra = ours.join("extra.conf"),
        ),
    )
    .unwrap();
    env.config.vhosts = vec!["echo".into(), "-f".into(), main.display().to_string()];
    env.configure();
    chown_all(env.root.path(), SERVICE_UID);
    let out = env
        .command(&["doctor"])
        .uid(SERVICE_UID)
        .gid(SERVICE_UID)
        .output()
        .unwrap();
    chown_all(env.root.path(), 0);
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    for (path, directive, line, place) in [
        (
            ours.join("logs/error.log"),
            "ErrorLog",
            2,
            format!(", in {}", ours.display()),
        ),
        (ours.join("extra.conf"), "Include", 4, String::new()),
    ] {
        let said = format!(
            "problem  apache Apache, as root, uses {} ({directive} in {}:{line}){place}, which \
             nobody owns",
            path.display(),
            main.display(),
        );
        assert!(
            report.contains(&said),
            "{said:?} missing:\n{report}{stderr}"
        );
    }
    assert!(!report.contains("access.log"), "{report}");
    assert!(!report.contains("conf.d"), "{report}");
    assert!(
        report.contains("fix: move it to a folder root owns"),
        "{report}"
    );
    assert_eq!(out.status.code(), Some(1), "{report}{stderr}");
}
