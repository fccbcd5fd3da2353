//! Driving headless Chromium: start it, fill and click, read text, and wait for what a
//! person would wait for (a page, a text).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

use crate::helpers::{PASSWORD, poll_until, wait_until};

/// How long a person would wait for a page or a text before calling it broken.
const WAIT: Duration = Duration::from_secs(5);

/// A chromedriver process, killed on drop.
pub struct Driver {
    child: Child,
    port: u16,
    profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn start_browser() -> (Driver, Client) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("/usr/bin/chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver is installed (apt-get install chromium chromium-driver)");
    let profile = tempfile::tempdir().unwrap();
    let driver = Driver {
        child,
        port,
        profile,
    };
    let url = format!("http://127.0.0.1:{}", driver.port);
    wait_until(
        "chromedriver to answer",
        Duration::from_secs(10),
        || async { reqwest::get(format!("{url}/status")).await.ok().map(drop) },
    )
    .await;
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1280,900",
                format!("--user-data-dir={}", driver.profile.path().display()),
            ]
        }),
    );
    let client = ClientBuilder::new(HttpConnector::new())
        .capabilities(capabilities)
        .connect(&url)
        .await
        .expect("a Chromium session");
    (driver, client)
}

pub fn screenshot_path(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{name}.png"))
}

pub async fn screenshot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.unwrap();
    std::fs::write(screenshot_path(name), png).unwrap();
}

pub async fn fill(browser: &Client, name: &str, value: &str) {
    browser
        .find(Locator::Css(&format!("[name=\"{name}\"]")))
        .await
        .unwrap()
        .send_keys(value)
        .await
        .unwrap();
}

pub async fn click(browser: &Client, css: &str) {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

pub async fn select(browser: &Client, name: &str, value: &str) {
    browser
        .find(Locator::Css(&format!("select[name=\"{name}\"]")))
        .await
        .unwrap()
        .select_by_value(value)
        .await
        .unwrap();
}

pub async fn text_of(browser: &Client, css: &str) -> String {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Signs a new account with `role` in through the sign-in form.
pub async fn sign_in(
    app: &crate::helpers::TestApp,
    browser: &Client,
    email: &str,
    role: export_destinations::domain::Role,
) {
    app.create_user(email, role).await;
    sign_in_existing(app, browser, email).await;
}

/// A browser with a new administrator `email` signed in through the sign-in form.
pub async fn administrator_browser(app: &crate::helpers::TestApp, email: &str) -> (Driver, Client) {
    let (driver, browser) = start_browser().await;
    sign_in(
        app,
        &browser,
        email,
        export_destinations::domain::Role::Administrator,
    )
    .await;
    (driver, browser)
}

/// Signs an account that already exists in through the sign-in form.
pub async fn sign_in_existing(app: &crate::helpers::TestApp, browser: &Client, email: &str) {
    browser.goto(&app.url("/sign-in")).await.unwrap();
    fill(browser, "email", email).await;
    fill(browser, "password", PASSWORD).await;
    click(browser, "button[type=submit]").await;
    wait_for_path(browser, "/admin/export-destinations").await;
}

pub async fn wait_for_path(browser: &Client, path: &str) {
    wait_for_path_where(browser, path, |now| now == path).await;
}

/// Waits (up to 5 s) until the browser shows a page whose path passes `wanted`.
pub async fn wait_for_path_where(browser: &Client, what: &str, wanted: impl Fn(&str) -> bool) {
    let reached = poll_until(WAIT, || async {
        let url = browser.current_url().await.ok()?;
        wanted(url.path()).then_some(())
    })
    .await;
    if reached.is_none() {
        panic!(
            "the browser never reached {what}: {}",
            browser.current_url().await.unwrap()
        );
    }
}

pub async fn click_button(browser: &Client, text: &str) {
    browser
        .find(Locator::XPath(&format!(
            "//button[normalize-space()='{text}' and not(@aria-hidden='true')] | //a[normalize-space()='{text}']"
        )))
        .await
        .unwrap_or_else(|e| panic!("no button {text:?}: {e}"))
        .click()
        .await
        .unwrap();
}

pub async fn wait_for_text(browser: &Client, css: &str, text: &str) {
    let shown = poll_until(WAIT, || async {
        let element = browser.find(Locator::Css(css)).await.ok()?;
        let now = element.text().await.unwrap_or_default();
        now.contains(text).then_some(())
    })
    .await;
    if shown.is_none() {
        panic!(
            "{css} never showed {text:?}: {}",
            browser.source().await.unwrap_or_default()
        );
    }
}

/// The current value of the form control named `name`.
pub async fn value_of(browser: &Client, name: &str) -> String {
    browser
        .find(Locator::Css(&format!("[name=\"{name}\"]")))
        .await
        .unwrap_or_else(|e| panic!("no control {name:?}: {e}"))
        .prop("value")
        .await
        .unwrap()
        .unwrap_or_default()
}

/// Presses Enter in the form control named `name`, as a person finishing a field does.
pub async fn press_enter_in(browser: &Client, name: &str) {
    browser
        .find(Locator::Css(&format!("[name=\"{name}\"]")))
        .await
        .unwrap()
        .send_keys("\u{e007}")
        .await
        .unwrap();
}

/// Texts on the page whose contrast with what is behind them is under 4.5:1 (WCAG AA),
/// as "element: text ratio"; disabled buttons and the hidden default action aside.
pub async fn low_contrast_texts(browser: &Client) -> Vec<String> {
    let found = browser
        .execute(
            r#"
function parse(c) { const m = c.match(/rgba?\(([^)]+)\)/); if (!m) return [0, 0, 0, 0];
  const p = m[1].split(',').map(Number); return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1]; }
function lum(c) { const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
  return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]); }
function behind(el) { const layers = [];
  for (let e = el; e; e = e.parentElement) { const c = parse(getComputedStyle(e).backgroundColor);
    if (c[3] > 0) { layers.push(c); if (c[3] >= 1) break; } }
  let base = [255, 255, 255];
  for (let i = layers.length - 1; i >= 0; i--) { const [r, g, b, a] = layers[i];
    base = [r * a + base[0] * (1 - a), g * a + base[1] * (1 - a), b * a + base[2] * (1 - a)]; }
  return base; }
function opacity(el) { let o = 1; for (let e = el; e; e = e.parentElement) o *= Number(getComputedStyle(e).opacity); return o; }
const low = [];
for (const el of document.querySelectorAll('body *')) {
  if (el.getClientRects().length === 0) continue;
  if (![...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim())) continue;
  if (el.closest('button[disabled]') || el.closest('.default-action') || el.closest('option')) continue;
  const fg = parse(getComputedStyle(el).color), bg = behind(el), a = fg[3] * opacity(el);
  const seen = [0, 1, 2].map(i => fg[i] * a + bg[i] * (1 - a));
  const l1 = lum(seen), l2 = lum(bg);
  const ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
  if (ratio < 4.5) low.push(el.tagName + '.' + el.className + ': ' + el.textContent.trim().slice(0, 40) + ' ' + ratio.toFixed(2));
}
return low;
"#,
            vec![],
        )
        .await
        .unwrap();
    serde_json::from_value(found).unwrap()
}

/// True when the page is wider than the window (it would scroll sideways).
pub async fn scrolls_sideways(browser: &Client) -> bool {
    let wider = browser
        .execute(
            "return document.documentElement.scrollWidth > window.innerWidth;",
            vec![],
        )
        .await
        .unwrap();
    wider.as_bool().unwrap_or(true)
}

/// Table headings and cells whose words the page breaks in the middle: the text takes more
/// lines than it has words (a heading "Runs" on two lines, "Ru" and "ns").
pub async fn words_broken(browser: &Client) -> Vec<String> {
    let found = browser
        .execute(
            r#"
            const broken = [];
            for (const cell of document.querySelectorAll('table th, table td')) {
                const text = cell.innerText.trim();
                if (!text || cell.querySelector('input, select, button, textarea')) continue;
                const range = document.createRange();
                range.selectNodeContents(cell);
                // Boxes that overlap vertically sit on one line (a badge's padding moves
                // its top a little, not to another line).
                const rects = [...range.getClientRects()]
                    .filter(r => r.width > 0)
                    .sort((a, b) => a.top - b.top);
                let lines = 0, bottom = -Infinity;
                for (const r of rects) {
                    if (r.top >= bottom - 1) { lines += 1; bottom = r.bottom; }
                    else bottom = Math.max(bottom, r.bottom);
                }
                const words = text.split(/\s+/).length;
                if (lines > words) broken.push(text + ' (' + lines + ' lines)');
            }
            return broken;
            "#,
            vec![],
        )
        .await
        .unwrap();
    serde_json::from_value(found).unwrap()
}

/// What makes each page hard to read at the window's width, one line a problem naming its
/// page: texts below 4.5:1, words broken in the middle, and (when `narrow`) a page wider
/// than the window.
pub async fn reading_problems(
    browser: &Client,
    app: &crate::helpers::TestApp,
    pages: &[String],
    narrow: bool,
) -> Vec<String> {
    let mut problems = Vec::new();
    for page in pages {
        browser.goto(&app.url(page)).await.unwrap();
        if narrow && scrolls_sideways(browser).await {
            problems.push(format!("{page}: scrolls sideways"));
        }
        let low = low_contrast_texts(browser).await;
        problems.extend(
            low.into_iter()
                .map(|t| format!("{page}: low contrast: {t}")),
        );
        let broken = words_broken(browser).await;
        problems.extend(broken.into_iter().map(|w| format!("{page}: broken: {w}")));
    }
    problems
}
