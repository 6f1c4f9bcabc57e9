//! A real headless Chromium for the manager's tests, driven over WebDriver (Debian's `chromium`
//! and `chromium-driver`, which `.ci/run` installs).
//!
//! Without them a browser test says so and passes on a developer's machine; under CI (`CI` set)
//! it fails, so a CI that lost its browser cannot pass silently. `CHROMIUM` and `CHROMEDRIVER`
//! name other binaries. Screenshots go to `target/screenshots/`, and to `docs/screenshots/` when
//! `TESSERA_UPDATE_SCREENSHOTS=1` (how the committed ones are made).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};

/// A chromedriver process and a browser session on it; both end when dropped.
pub struct Browser {
    /// The WebDriver client.
    pub client: Client,
    driver: Child,
}

fn binary(var: &str, default: &str) -> Option<PathBuf> {
    let p = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    p.exists().then_some(p)
}

/// The browser, or `None` (with a note) where it is not installed and this is not CI.
pub async fn browser(test: &str) -> Option<Browser> {
    let (Some(chromium), Some(driver)) = (
        binary("CHROMIUM", "/usr/bin/chromium"),
        binary("CHROMEDRIVER", "/usr/bin/chromedriver"),
    ) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: chromium and chromedriver are needed in CI (apt-get install chromium chromium-driver)"
        );
        eprintln!("{test}: skipped: no /usr/bin/chromium or /usr/bin/chromedriver (apt-get install chromium chromium-driver)");
        return None;
    };
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = Command::new(&driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", driver.display()));
    let url = format!("http://127.0.0.1:{port}");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,900", "--lang=en-GB", "--disable-extensions",
                     "--no-first-run", "--password-store=basic"]
        }),
    );
    let mut last = None;
    for _ in 0..100 {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&url)
            .await
        {
            Ok(client) => {
                return Some(Browser {
                    client,
                    driver: child,
                })
            }
            Err(e) => {
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let _ = child.kill();
    panic!(
        "{test}: no WebDriver session from {}: {last:?}",
        driver.display()
    );
}

impl Browser {
    /// Opens `url`.
    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// The current page's path and query.
    pub async fn path(&self) -> String {
        let u = self.client.current_url().await.unwrap();
        match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_string(),
        }
    }

    /// The page's visible text.
    pub async fn text(&self) -> String {
        self.client
            .find(Locator::Css("body"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The text of the first element matching `css` (waited for).
    pub async fn text_of(&self, css: &str) -> String {
        self.find(Locator::Css(css), css)
            .await
            .text()
            .await
            .unwrap()
    }

    /// Types `text` into the field matching `css` (after clearing it).
    pub async fn fill(&self, css: &str, text: &str) {
        let e = self.find(Locator::Css(css), css).await;
        e.clear().await.unwrap();
        e.send_keys(text).await.unwrap();
    }

    /// Clicks the element matching `css` and waits for the page it leads to.
    pub async fn click(&self, css: &str) {
        let e = self.find(Locator::Css(css), css).await;
        self.navigating(e, css).await;
    }

    /// Clicks the link or button whose text is `text` and waits for the page it leads to.
    pub async fn click_text(&self, text: &str) {
        let xpath = Self::by_text(text);
        let e = self.find(Locator::XPath(&xpath), text).await;
        self.navigating(e, text).await;
    }

    /// Clicks what does not lead to another page (a checkbox, a `details` summary).
    pub async fn toggle(&self, css_or_text: &str) {
        let xpath = Self::by_text(css_or_text);
        let e = match self.client.find(Locator::XPath(&xpath)).await {
            Ok(e) => e,
            Err(_) => self.find(Locator::Css(css_or_text), css_or_text).await,
        };
        e.click()
            .await
            .unwrap_or_else(|e| panic!("click {css_or_text}: {e}"));
    }

    fn by_text(text: &str) -> String {
        format!(
            "//a[normalize-space()='{text}'] | //button[normalize-space()='{text}'] | //summary[normalize-space()='{text}']"
        )
    }

    /// The element `what`, waited for (up to 10 s).
    async fn find(&self, locator: Locator<'_>, what: &str) -> fantoccini::elements::Element {
        match self
            .client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(locator)
            .await
        {
            Ok(e) => e,
            Err(e) => panic!("no {what:?} on {}: {e}", self.path_now().await),
        }
    }

    async fn path_now(&self) -> String {
        self.client
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_default()
    }

    /// Clicks `e` and waits until the page it was on is gone and the next one has loaded.
    async fn navigating(&self, e: fantoccini::elements::Element, what: &str) {
        let html = self.client.find(Locator::Css("html")).await.unwrap();
        e.click()
            .await
            .unwrap_or_else(|e| panic!("click {what}: {e}"));
        for _ in 0..200 {
            if html.tag_name().await.is_err() {
                // stale: the next page replaced it
                for _ in 0..200 {
                    let ready = self
                        .client
                        .execute("return document.readyState", vec![])
                        .await
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string));
                    if ready.as_deref() == Some("complete") {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                panic!("the page after clicking {what} did not finish loading");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("clicking {what} did not lead to another page");
    }

    /// Attaches a file to the file input matching `css`.
    pub async fn attach(&self, css: &str, file: &Path) {
        let e = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"));
        e.send_keys(&file.display().to_string()).await.unwrap();
    }

    /// Sets the window's size (360 wide for a phone).
    pub async fn size(&self, width: u32, height: u32) {
        self.client.set_window_size(width, height).await.unwrap();
    }

    /// Saves a screenshot of the page as `NAME.png` (see the module's documentation).
    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut dirs = vec![root.join("target/screenshots")];
        if std::env::var_os("TESSERA_UPDATE_SCREENSHOTS").is_some() {
            dirs.push(root.join("docs/screenshots"));
        }
        for d in dirs {
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(format!("{name}.png")), &png).unwrap();
        }
    }

    /// Presses Tab `n` times and says which element has the focus (its text or name).
    pub async fn tab(&self, n: usize) -> String {
        for _ in 0..n {
            self.client
                .active_element()
                .await
                .unwrap()
                .send_keys("\u{E004}")
                .await
                .unwrap();
        }
        let e = self.client.active_element().await.unwrap();
        let text = e.text().await.unwrap_or_default();
        if text.is_empty() {
            e.attr("name").await.unwrap().unwrap_or_default()
        } else {
            text
        }
    }

    /// Ends the session and the driver.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}

impl Browser {
    /// Logs `user` in through the login page at `url`. With `new`, it is a first login: the page
    /// demands a new password, gets `new`, says the password was changed, and `user` logs in with
    /// it. Ends on the features view, signed in.
    pub async fn log_in(&self, url: &str, user: &str, password: &str, new: Option<&str>) {
        self.goto(&format!("{url}/login")).await;
        self.fill("#user", user).await;
        self.fill("#password", password).await;
        self.click("form.stack button[type=submit]").await;
        if let Some(new) = new {
            assert_eq!(self.path().await, "/password?first=1");
            self.fill("#user", user).await;
            self.fill("#current", password).await;
            self.fill("#new", new).await;
            self.fill("#confirm", new).await;
            self.click("form.stack button[type=submit]").await;
            assert!(self.text().await.contains("Your password was changed"));
            self.fill("#user", user).await;
            self.fill("#password", new).await;
            self.click("form.stack button[type=submit]").await;
        }
        assert_eq!(self.path().await, "/features");
        let text = self.text().await;
        assert!(text.contains(&format!("Signed in as {user}")), "{text}");
    }

    /// Fetches `path` from the page's origin with its session, as a download link would: the
    /// status, the `Content-Disposition` header and the body's text.
    pub async fn fetch(&self, path: &str) -> (u64, String, String) {
        let v = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 fetch(arguments[0]).then(async r => done([r.status, r.headers.get('content-disposition') || '', await r.text()]))
                   .catch(e => done([0, '', String(e)]));",
                vec![serde_json::json!(path)],
            )
            .await
            .unwrap_or_else(|e| panic!("fetch {path}: {e}"));
        (
            v[0].as_u64().unwrap_or(0),
            v[1].as_str().unwrap_or_default().to_string(),
            v[2].as_str().unwrap_or_default().to_string(),
        )
    }
}
