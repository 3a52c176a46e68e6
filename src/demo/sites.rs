//! The demo's club sites: with PHP installed, each club's site of each application is served
//! by its own `php -S` on a loopback port, through a small router that reads the club's
//! webroot link on every request (so a switch is live at once, as Apache's graceful reload
//! makes it), with OPcache on. The clubs get those addresses, so the demo's deploys are
//! health-checked and the OPcache page has figures. The servers stop with the demo.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::Context;

use crate::config::Settings;
use crate::db::Conn;

/// The `php -S` servers of the club sites; dropping this stops them.
pub struct Sites {
    children: Vec<Child>,
    /// Each site served: the club's slug, the application and its address.
    pub served: Vec<(String, String, String)>,
}

impl Drop for Sites {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether a PHP command line is installed (`php -v` works).
pub fn php_installed() -> bool {
    Command::new("php")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The router of one site: the file asked for in the release the club's webroot links to
/// now (its index.php for anything else), read through the link on every request.
fn router(webroot: &Path) -> String {
    format!(
        r#"<?php
// Written by `clubdeploy demo`: serves {webroot} as Apache would, the link read anew on
// every request.
$webroot = {webroot};
$release = @readlink($webroot);
if ($release === false) {{
    http_response_code(503);
    echo "This club has no release yet: deploy one from the panel.";
    return true;
}}
if ($release[0] !== '/') {{
    $release = dirname($webroot) . '/' . $release;
}}
$path = parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH) ?: '/';
$file = realpath($release . $path);
if ($file === false || strpos($file, realpath($release) . '/') !== 0 || is_dir($file)) {{
    $file = $release . '/index.php';
}}
if (substr($file, -4) === '.php') {{
    chdir(dirname($file));
    $_SERVER['SCRIPT_FILENAME'] = $file;
    include $file;
    return true;
}}
readfile($file);
return true;
"#,
        webroot = php_string(&webroot.display().to_string())
    )
}

/// `text` as a PHP single-quoted string (nothing in it is interpolated).
fn php_string(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A free loopback port (the system's choice, let go at once for the server to take).
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Serves every club site of the demo in `dir`, and gives each club that address (audited
/// as the demo, and only when it changed).
pub fn serve(dir: &Path, settings: &Settings, conn: &mut Conn) -> anyhow::Result<Sites> {
    let routers = dir.canonicalize()?.join("sites");
    std::fs::create_dir_all(&routers)?;
    let mut sites = Sites {
        children: Vec::new(),
        served: Vec::new(),
    };
    for webroot in crate::db::clubs::webroots(conn, None)? {
        let port = free_port()?;
        let file: PathBuf = routers.join(format!("{}-{}.php", webroot.slug, webroot.app));
        std::fs::write(&file, router(Path::new(&webroot.webroot)))?;
        let mut command = Command::new("php");
        command
            .args([
                "-d",
                "opcache.enable_cli=1",
                "-d",
                "opcache.validate_timestamps=0",
            ])
            .arg("-S")
            .arg(format!("127.0.0.1:{port}"))
            .arg(&file)
            .current_dir(&routers)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // A demo killed outright takes its sites with it.
        // SAFETY: prctl(2) is async-signal-safe and touches no memory of the parent's.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                rustix::process::set_parent_process_death_signal(Some(
                    rustix::process::Signal::TERM,
                ))
                .map_err(std::io::Error::from)
            });
        }
        let child = command
            .spawn()
            .with_context(|| format!("cannot start php -S for club {}", webroot.slug))?;
        sites.children.push(child);
        let url = format!(
            "http://{}.{}.demo.localhost:{port}/",
            webroot.slug, webroot.app
        );
        if webroot.url.as_deref() != Some(url.as_str()) {
            crate::service::inventory::set_url(
                settings,
                conn,
                "demo",
                &webroot.slug,
                Some(&webroot.app),
                Some(&url),
            )?;
        }
        sites.served.push((webroot.slug, webroot.app, url));
    }
    Ok(sites)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_a_php_string_that_interpolates_nothing() {
        assert_eq!(php_string("/srv/www/a"), "'/srv/www/a'");
        assert_eq!(php_string("/srv/it's/$x\\"), "'/srv/it\\'s/$x\\\\'");
    }
}
