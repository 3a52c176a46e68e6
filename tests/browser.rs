//! The panel in a real headless Chromium, driven through chromedriver: sign in, deploy a tag
//! to all clubs through the form and its confirmation, watch the job page reach success
//! without reloading, roll one club back with its button, and find both in the audit log.
//! Screenshots of each page go to `target/e2e-screenshots/` and must not be blank.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{ClientBuilder, Locator};

use crate::helpers::TestEnv;
use crate::web::{PASSWORD, TestApp};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Whether Chromium and chromedriver are installed (see [`crate::helpers::installed`]).
fn available() -> bool {
    crate::helpers::installed(
        "BROWSER TEST",
        &[(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")],
    )
}

/// chromedriver on a loopback port, stopped when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start() -> Driver {
        let port = crate::helpers::free_port();
        let child = Command::new(CHROMEDRIVER)
            .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".into()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver { child, port }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/e2e-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Saves a screenshot and checks that it shows something: a PNG whose pixels are not all
/// one colour.
async fn snap(browser: &fantoccini::Client, name: &str) {
    let png = browser.screenshot().await.unwrap();
    let path = screenshot_dir().join(format!("{name}.png"));
    std::fs::write(&path, &png).unwrap();
    let decoder = png::Decoder::new(std::io::Cursor::new(&png));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    let pixels = &pixels[..info.buffer_size()];
    let step = info.color_type.samples();
    let first = &pixels[..step];
    let differing = pixels.chunks(step).filter(|p| *p != first).count();
    assert!(
        differing > pixels.len() / step / 100,
        "screenshot {} is blank",
        path.display()
    );
}

#[tokio::test]
async fn staff_deploy_and_roll_back_in_a_real_browser() {
    if !available() {
        return;
    }
    let mut env = TestEnv::new();
    env.add_clubs(&["a", "b"]);
    env.ok(&["deploy", "v1", "--all"]);
    // Building v2 takes two seconds, so the job page opens while the job still runs.
    env.config.build_commands = vec![crate::helpers::sh("sleep 2")];
    env.configure();
    let app = TestApp::spawn(env).await;
    let driver = Driver::start();
    let profile = tempfile::tempdir().unwrap();
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1200,900",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        }),
    );
    let browser = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("chromedriver session");
    let result = drive(&app, &browser).await;
    let _ = browser.close().await;
    result.unwrap();
}

async fn drive(
    app: &TestApp,
    browser: &fantoccini::Client,
) -> Result<(), fantoccini::error::CmdError> {
    let v1 = app.env.release_name("v1");
    let v2 = app.env.release_name("v2");

    browser.goto(&app.url("/")).await?;
    snap(browser, "01-login").await;
    browser
        .find(Locator::Css("input[name=name]"))
        .await?
        .send_keys("admin")
        .await?;
    browser
        .find(Locator::Css("input[name=password]"))
        .await?
        .send_keys(PASSWORD)
        .await?;
    browser
        .find(Locator::Css("form button[type=submit]"))
        .await?
        .click()
        .await?;
    browser
        .wait()
        .for_element(Locator::XPath("//h1[text()='Dashboard']"))
        .await?;
    snap(browser, "02-dashboard").await;

    // A new installation: fetch the tags with the releases page's Refresh (a job).
    browser.goto(&app.url("/releases")).await?;
    browser
        .find(Locator::Css("form[action^='/releases/refresh'] button"))
        .await?
        .click()
        .await?;
    browser.wait().for_element(Locator::Id("job")).await?;
    wait_for_status(browser, "succeeded").await?;
    browser.goto(&app.url("/releases")).await?;
    snap(browser, "02-releases").await;

    browser.goto(&app.url("/deploy")).await?;
    browser
        .find(Locator::Css("select[name=tag] option[value=v2]"))
        .await?
        .click()
        .await?;
    browser
        .find(Locator::Css("input[name=target][value=all]"))
        .await?
        .click()
        .await?;
    snap(browser, "03-deploy-form").await;
    browser
        .find(Locator::Css("main form button[type=submit]"))
        .await?
        .click()
        .await?;
    let summary = browser
        .wait()
        .for_element(Locator::Css(".notice strong"))
        .await?
        .text()
        .await?;
    assert_eq!(summary, format!("2 clubs will move to {v2}."));
    snap(browser, "04-deploy-confirm").await;
    browser
        .find(Locator::Css("main form button[type=submit]"))
        .await?
        .click()
        .await?;

    // The job page: mark the window, then wait for success; a reload would lose the mark.
    browser.wait().for_element(Locator::Id("job")).await?;
    browser
        .execute("window.stillTheSamePage = true;", vec![])
        .await?;
    let at_first = browser.find(Locator::Id("status")).await?.text().await?;
    assert!(
        at_first == "queued" || at_first == "running",
        "the job had ended: {at_first}"
    );
    wait_for_status(browser, "succeeded").await?;
    let same = browser
        .execute("return window.stillTheSamePage === true;", vec![])
        .await?;
    assert_eq!(
        same,
        serde_json::Value::Bool(true),
        "the job page was reloaded"
    );
    let progress = browser
        .find(Locator::Id("progress-text"))
        .await?
        .text()
        .await?;
    assert_eq!(progress, "2 of 2 clubs switched");
    snap(browser, "05-job-succeeded").await;
    assert_eq!(app.env.release_of("a"), v2);

    browser.goto(&app.url("/clubs")).await?;
    snap(browser, "06-clubs").await;
    browser
        .find(Locator::Css("a.button[href^='/clubs/a/rollback']"))
        .await?
        .click()
        .await?;
    let confirm = browser
        .wait()
        .for_element(Locator::Css(".notice"))
        .await?
        .text()
        .await?;
    assert!(confirm.contains(&v1), "{confirm}");
    snap(browser, "07-rollback-confirm").await;
    browser
        .find(Locator::Css("main form button[type=submit]"))
        .await?
        .click()
        .await?;
    browser.wait().for_element(Locator::Id("job")).await?;
    wait_for_status(browser, "succeeded").await?;
    snap(browser, "08-rollback-succeeded").await;
    assert_eq!(app.env.release_of("a"), v1);
    assert_eq!(app.env.release_of("b"), v2);

    browser.goto(&app.url("/audit?user=admin")).await?;
    let audit = browser.find(Locator::Css("main")).await?.text().await?;
    assert!(audit.contains("deploy v2 to all clubs"), "{audit}");
    assert!(audit.contains(&format!("roll back a to {v1}")), "{audit}");
    snap(browser, "09-audit").await;
    Ok(())
}

/// Waits (bounded) until the job page's status reads `wanted`, without navigating.
async fn wait_for_status(
    browser: &fantoccini::Client,
    wanted: &str,
) -> Result<(), fantoccini::error::CmdError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = browser.find(Locator::Id("status")).await?.text().await?;
        if status == wanted {
            return Ok(());
        }
        assert!(
            Instant::now() < deadline,
            "the job page shows {status:?}, not {wanted:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
