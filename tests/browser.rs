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
pub fn available() -> bool {
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
    /// chromedriver, and the Chromium it starts, in time zone `tz` (e.g. `UTC`).
    fn start(tz: &str) -> Driver {
        let port = crate::helpers::free_port();
        let child = Command::new(CHROMEDRIVER)
            .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".into()])
            .env("TZ", tz)
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

/// A headless Chromium session on its own profile, closed (with its chromedriver) when
/// [`Browser::close`]d or dropped.
pub struct Browser {
    pub client: fantoccini::Client,
    _driver: Driver,
    _profile: tempfile::TempDir,
}

/// How a [`Browser`] shows pages.
pub struct Screen {
    /// The viewport's width in CSS pixels: 390 is a phone (emulated: touch, the viewport meta
    /// honoured), anything else a desktop window.
    pub width: u32,
    pub height: u32,
    /// The time zone the browser runs in.
    pub tz: &'static str,
}

impl Screen {
    pub const DESKTOP: Screen = Screen {
        width: 1280,
        height: 900,
        tz: "UTC",
    };
    pub const PHONE: Screen = Screen {
        width: 390,
        height: 844,
        tz: "UTC",
    };
}

impl Browser {
    pub async fn open(screen: &Screen) -> Browser {
        let driver = Driver::start(screen.tz);
        let profile = tempfile::tempdir().unwrap();
        let mut options = serde_json::json!({
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                format!("--window-size={},{}", screen.width.max(800), screen.height),
                format!("--user-data-dir={}", profile.path().display()),
            ],
        });
        if screen.width < 800 {
            options["mobileEmulation"] = serde_json::json!({
                "deviceMetrics": { "width": screen.width, "height": screen.height, "pixelRatio": 1.0, "mobile": true, "touch": true },
            });
        }
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("goog:chromeOptions".into(), options);
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}", driver.port))
            .await
            .expect("chromedriver session");
        Browser {
            client,
            _driver: driver,
            _profile: profile,
        }
    }

    /// Signs `name` in through the sign-in form and waits for the dashboard.
    pub async fn sign_in(
        &self,
        app: &TestApp,
        name: &str,
    ) -> Result<(), fantoccini::error::CmdError> {
        let b = &self.client;
        b.goto(&app.url("/login")).await?;
        b.find(Locator::Css("input[name=name]"))
            .await?
            .send_keys(name)
            .await?;
        b.find(Locator::Css("input[name=password]"))
            .await?
            .send_keys(PASSWORD)
            .await?;
        b.find(Locator::Css("form button[type=submit]"))
            .await?
            .click()
            .await?;
        b.wait()
            .for_element(Locator::XPath("//h1[text()='Dashboard']"))
            .await?;
        Ok(())
    }

    /// Ends the session.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    /// After a failed assertion the session is not closed: stop the Chromium processes of
    /// this profile, which would outlive their chromedriver.
    fn drop(&mut self) {
        let _ = Command::new("pkill")
            .arg("-f")
            .arg(format!("user-data-dir={}", self._profile.path().display()))
            .status();
    }
}

/// Saves a screenshot and checks that it shows something: a PNG whose pixels are not all
/// one colour.
pub async fn snap(browser: &fantoccini::Client, name: &str) {
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
    let browser = Browser::open(&Screen::DESKTOP).await;
    let result = drive(&app, &browser.client).await;
    browser.close().await;
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
    assert_eq!(summary, "2 clubs will move to v2.");
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
    assert_eq!(progress, "2 of 2 clubs on v2");
    snap(browser, "05-job-succeeded").await;
    // Every step of a deploy was listed from the start; as the events came, each one run
    // was marked done with its start, end and duration, without a reload.
    let steps = browser
        .execute(
            "return Array.from(document.querySelectorAll('#steps li')).map(li => \
             [li.dataset.step, li.className, li.querySelector('.step-times').textContent]);",
            vec![],
        )
        .await?;
    let steps: Vec<(String, String, String)> = serde_json::from_value(steps).unwrap();
    let names: Vec<&str> = steps.iter().map(|(name, ..)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "fetch",
            "build",
            "preflight",
            "switch",
            "reload",
            "health",
            "prune"
        ]
    );
    for (name, class, times) in &steps {
        assert_eq!(class, "step-done", "{name}: {steps:?}");
        assert!(
            times.contains("started") && times.contains("ended") && times.contains("took"),
            "{name}: {times:?}"
        );
    }
    // The finished deploy now offers to put its clubs back, still without a reload.
    let offer = browser
        .wait()
        .for_element(Locator::Css("#put-back a"))
        .await?
        .text()
        .await?;
    assert_eq!(offer, "Put these clubs back… (2 switched)");
    let same = browser
        .execute("return window.stillTheSamePage === true;", vec![])
        .await?;
    assert_eq!(same, serde_json::Value::Bool(true));
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
    assert!(confirm.contains("It will go back to v1 "), "{confirm}");
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
pub async fn wait_for_status(
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

/// Opens each `(name, path)` of `pages` in turn in `browser` (signed in already), waits for
/// its heading, saves a screenshot `<prefix>-<width>-<name>` and calls `check` with the path.
pub async fn each_page(
    browser: &Browser,
    app: &TestApp,
    screen: &Screen,
    pages: &[(&str, &str)],
    prefix: &str,
    mut check: impl AsyncFnMut(&fantoccini::Client, &str) -> Result<(), fantoccini::error::CmdError>,
) -> Result<(), fantoccini::error::CmdError> {
    let b = &browser.client;
    for (name, path) in pages {
        b.goto(&app.url(path)).await?;
        b.wait().for_element(Locator::Css("main h1")).await?;
        snap(b, &format!("{prefix}-{}-{name}", screen.width)).await;
        check(b, path).await?;
    }
    Ok(())
}
