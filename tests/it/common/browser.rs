//! A small synchronous Chrome DevTools Protocol driver for the browser tests
//! of the review pages: Debian's headless chromium, one page, and the few
//! commands a test needs (navigate, evaluate, wait, click, screenshot).
//!
//! It speaks CDP over one websocket to the page target (found with
//! `GET /json/list` on the debugging port). Every command has a deadline;
//! events that arrive while a reply is awaited are queued (bounded) so a
//! later wait can find them, and replies to commands that already timed out
//! are dropped.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};

/// The chromium Debian installs.
const CHROMIUM: &str = "/usr/bin/chromium";
/// Longest wait for one CDP reply.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest wait for chromium to start and show its page target.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest wait for a navigation's load event.
const LOAD_TIMEOUT: Duration = Duration::from_secs(30);
/// Events kept while nobody waits for them; older ones are dropped.
const MAX_QUEUED_EVENTS: usize = 1000;
/// Lines of chromium's stderr kept to explain a failed launch.
const STDERR_TAIL_LINES: usize = 20;
/// How often `wait_for` evaluates its condition.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// A headless chromium with one page, driven over CDP.
///
/// The chromium process is killed and its temporary profile removed when
/// the `Browser` is dropped.
pub struct Browser {
    socket: WebSocket<TcpStream>,
    next_id: u64,
    events: VecDeque<Value>,
    child: Child,
    // Dropped after the child is killed (see `Drop`), so chromium is not
    // writing into it while it is removed.
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts `/usr/bin/chromium` headless on a free debugging port with a
    /// fresh profile and a 1400×1000 window, and connects to its page.
    pub fn launch() -> Result<Self, String> {
        let profile = tempfile::Builder::new()
            .prefix("hearken-chromium-")
            .tempdir()
            .map_err(|e| format!("launch: temporary profile: {e}"))?;
        let mut child = Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--remote-debugging-port=0",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-extensions",
                "--mute-audio",
                "--autoplay-policy=no-user-gesture-required",
                "--window-size=1400,1000",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("launch: cannot start {CHROMIUM}: {e}"))?;
        let connected = child
            .stderr
            .take()
            .ok_or_else(|| "launch: chromium's stderr was not captured".to_string())
            .and_then(devtools_port)
            .and_then(|port| page_socket_url(port, Instant::now() + LAUNCH_TIMEOUT))
            .and_then(|url| connect(&url));
        let socket = match connected {
            Ok(socket) => socket,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        let mut browser = Browser {
            socket,
            next_id: 1,
            events: VecDeque::new(),
            child,
            _profile: profile,
        };
        browser.call("Page.enable", json!({}))?;
        Ok(browser)
    }

    /// Opens `url` and waits (up to 30 s) for its load event.
    pub fn navigate(&mut self, url: &str) -> Result<(), String> {
        // A load event of an earlier page must not end this wait.
        self.events
            .retain(|e| e.get("method").and_then(Value::as_str) != Some("Page.loadEventFired"));
        let reply = self.call("Page.navigate", json!({ "url": url }))?;
        if let Some(error) = reply.get("errorText").and_then(Value::as_str) {
            return Err(format!("Page.navigate {url}: {error}"));
        }
        // Without a loader the navigation stayed in the document (a fragment):
        // there is no load event to wait for.
        if reply.get("loaderId").is_none() {
            return Ok(());
        }
        self.wait_event("Page.loadEventFired", Instant::now() + LOAD_TIMEOUT)
            .map(|_| ())
            .map_err(|e| format!("Page.navigate {url}: {e}"))
    }

    /// Evaluates `js` in the page, awaiting it if it is a promise, and
    /// returns its value as JSON (`Null` for `undefined`). A thrown error or
    /// a rejected promise is an `Err` with its message.
    pub fn eval(&mut self, js: &str) -> Result<Value, String> {
        let reply = self.call(
            "Runtime.evaluate",
            json!({
                "expression": js,
                "awaitPromise": true,
                "returnByValue": true,
                "userGesture": true,
            }),
        )?;
        if let Some(details) = reply.get("exceptionDetails") {
            let message = details
                .pointer("/exception/description")
                .or_else(|| details.pointer("/exception/value"))
                .or_else(|| details.get("text"))
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                .unwrap_or_else(|| details.to_string());
            return Err(format!("Runtime.evaluate: {message}"));
        }
        Ok(reply
            .pointer("/result/value")
            .cloned()
            .unwrap_or(Value::Null))
    }

    /// Evaluates `js_condition` every 50 ms until it is truthy. Errors while
    /// waiting (the page not there yet) count as false; the last one is
    /// named if the wait times out.
    pub fn wait_for(&mut self, js_condition: &str, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let expression = format!("!!({js_condition})");
        let mut last_error = None;
        loop {
            match self.eval(&expression) {
                Ok(Value::Bool(true)) => return Ok(()),
                Ok(_) => {}
                Err(e) => last_error = Some(e),
            }
            if Instant::now() >= deadline {
                let why = last_error.map_or_else(String::new, |e| format!(" (last error: {e})"));
                return Err(format!(
                    "wait_for `{js_condition}`: not true after {timeout:?}{why}"
                ));
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Clicks the first element matching `css_selector` as a user would:
    /// scrolls it to the middle of the window, then presses and releases
    /// the left button over the centre of its first box (a wrapped inline
    /// element's first line). Fails if another element covers that point.
    pub fn click(&mut self, css_selector: &str) -> Result<(), String> {
        let selector = serde_json::to_string(css_selector)
            .map_err(|e| format!("click {css_selector}: {e}"))?;
        let point = self
            .eval(&format!(
                r#"(() => {{
                    const el = document.querySelector({selector});
                    if (!el) throw new Error('no element matches ' + {selector});
                    el.scrollIntoView({{ block: 'center', inline: 'center', behavior: 'instant' }});
                    const box = el.getClientRects()[0];
                    if (!box || box.width === 0 || box.height === 0) throw new Error({selector} + ' is not visible');
                    const x = box.left + box.width / 2;
                    const y = box.top + box.height / 2;
                    const hit = document.elementFromPoint(x, y);
                    if (hit !== el && !el.contains(hit)) {{
                        throw new Error({selector} + ' is covered by ' + (hit ? hit.tagName.toLowerCase() + (hit.className ? '.' + String(hit.className).split(' ').join('.') : '') : 'nothing'));
                    }}
                    return {{ x, y }};
                }})()"#
            ))
            .map_err(|e| format!("click {css_selector}: {e}"))?;
        let (Some(x), Some(y)) = (
            point.get("x").and_then(Value::as_f64),
            point.get("y").and_then(Value::as_f64),
        ) else {
            return Err(format!("click {css_selector}: no position in {point}"));
        };
        self.call(
            "Input.dispatchMouseEvent",
            json!({ "type": "mouseMoved", "x": x, "y": y }),
        )?;
        for kind in ["mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({ "type": kind, "x": x, "y": y, "button": "left", "buttons": 1, "clickCount": 1 }),
            )?;
        }
        Ok(())
    }

    /// Saves what the window shows as a PNG at `path`.
    pub fn screenshot(&mut self, path: &Path) -> Result<(), String> {
        self.capture(path, json!({ "format": "png" }))
    }

    /// Saves the whole page (up to 16,384 pixels tall) as a PNG at `path`.
    pub fn screenshot_full_page(&mut self, path: &Path) -> Result<(), String> {
        let metrics = self.call("Page.getLayoutMetrics", json!({}))?;
        let size = |key: &str| {
            metrics
                .pointer(&format!("/cssContentSize/{key}"))
                .and_then(Value::as_f64)
                .ok_or_else(|| format!("Page.getLayoutMetrics: no cssContentSize.{key}"))
        };
        let (width, height) = (size("width")?, size("height")?.min(16_384.0));
        self.capture(
            path,
            json!({
                "format": "png",
                "captureBeyondViewport": true,
                "clip": { "x": 0, "y": 0, "width": width, "height": height, "scale": 1 },
            }),
        )
    }

    fn capture(&mut self, path: &Path, params: Value) -> Result<(), String> {
        let reply = self.call("Page.captureScreenshot", params)?;
        let data = reply
            .get("data")
            .and_then(Value::as_str)
            .ok_or_else(|| "Page.captureScreenshot: no data in the reply".to_string())?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| format!("Page.captureScreenshot: bad base64: {e}"))?;
        std::fs::write(path, png)
            .map_err(|e| format!("Page.captureScreenshot: writing {}: {e}", path.display()))
    }

    /// Sends one command and returns its `result`; a CDP error or no reply
    /// within 20 s is an `Err` naming the method.
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({ "id": id, "method": method, "params": params }).to_string();
        let deadline = Instant::now() + CALL_TIMEOUT;
        set_timeout(&self.socket, deadline).map_err(|e| format!("{method}: {e}"))?;
        self.socket
            .send(Message::text(request))
            .map_err(|e| format!("{method}: sending: {e}"))?;
        loop {
            let message = self
                .receive(deadline)
                .map_err(|e| format!("{method}: {e}"))?;
            match message.get("id").and_then(Value::as_u64) {
                Some(reply_id) if reply_id == id => {
                    if let Some(error) = message.get("error") {
                        let text = error.get("message").and_then(Value::as_str).unwrap_or("");
                        let data = error.get("data").and_then(Value::as_str).unwrap_or("");
                        return Err(format!("{method}: {text} {data}").trim_end().to_string());
                    }
                    return Ok(message.get("result").cloned().unwrap_or(Value::Null));
                }
                // The late reply of a command that timed out: nobody waits.
                Some(_) => {}
                None => self.queue_event(message),
            }
        }
    }

    /// Waits for the event `method` (queued or new) and returns its params.
    fn wait_event(&mut self, method: &str, deadline: Instant) -> Result<Value, String> {
        let is_it = |e: &Value| e.get("method").and_then(Value::as_str) == Some(method);
        if let Some(at) = self.events.iter().position(is_it) {
            let event = self.events.remove(at).unwrap_or(Value::Null);
            return Ok(event.get("params").cloned().unwrap_or(Value::Null));
        }
        loop {
            let message = self
                .receive(deadline)
                .map_err(|e| format!("waiting for {method}: {e}"))?;
            if is_it(&message) {
                return Ok(message.get("params").cloned().unwrap_or(Value::Null));
            }
            if message.get("id").is_none() {
                self.queue_event(message);
            }
        }
    }

    fn queue_event(&mut self, event: Value) {
        if self.events.len() >= MAX_QUEUED_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    /// The next JSON message from the page, before `deadline`.
    fn receive(&mut self, deadline: Instant) -> Result<Value, String> {
        loop {
            set_timeout(&self.socket, deadline)?;
            match self.socket.read() {
                Ok(Message::Text(text)) => {
                    return serde_json::from_str(text.as_str())
                        .map_err(|e| format!("a message that is not JSON: {e}"));
                }
                Ok(Message::Close(_)) => return Err("the browser closed the connection".into()),
                // Pings are answered by tungstenite; nothing else is sent.
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                {
                    return Err(format!("no answer within {CALL_TIMEOUT:?}"));
                }
                Err(e) => return Err(format!("reading: {e}")),
            }
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.socket.close(None);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Lets the socket block until `deadline` at most (tungstenite keeps a
/// partly read frame, so a read can time out and be resumed).
fn set_timeout(socket: &WebSocket<TcpStream>, deadline: Instant) -> Result<(), String> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(format!("no answer within {CALL_TIMEOUT:?}"));
    }
    let stream = socket.get_ref();
    stream
        .set_read_timeout(Some(left))
        .and_then(|()| stream.set_write_timeout(Some(left)))
        .map_err(|e| format!("socket timeout: {e}"))
}

/// The debugging port chromium prints as "DevTools listening on
/// ws://127.0.0.1:PORT/devtools/browser/…". A thread keeps draining stderr
/// afterwards so chromium never blocks on a full pipe.
fn devtools_port(stderr: impl Read + Send + 'static) -> Result<u16, String> {
    let (found, port) = mpsc::channel();
    std::thread::spawn(move || {
        let mut tail = VecDeque::new();
        let mut reported = false;
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if !reported {
                if let Some(url) = line.split("DevTools listening on ").nth(1) {
                    let _ = found.send(parse_port(url.trim()));
                    reported = true;
                } else {
                    if tail.len() == STDERR_TAIL_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                }
            }
        }
        if !reported {
            let said = Vec::from(tail).join("\n");
            let _ = found.send(Err(format!("chromium exited before listening:\n{said}")));
        }
    });
    port.recv_timeout(LAUNCH_TIMEOUT)
        .map_err(|_| format!("launch: chromium did not listen within {LAUNCH_TIMEOUT:?}"))?
        .map_err(|e| format!("launch: {e}"))
}

fn parse_port(ws_url: &str) -> Result<u16, String> {
    ws_url
        .strip_prefix("ws://")
        .and_then(|rest| rest.split('/').next())
        .and_then(|host_port| host_port.rsplit(':').next())
        .and_then(|port| port.parse().ok())
        .ok_or_else(|| format!("no port in {ws_url:?}"))
}

/// The websocket URL of the first page target, asking `/json/list` until
/// chromium lists one.
fn page_socket_url(port: u16, deadline: Instant) -> Result<String, String> {
    loop {
        let last = match http_get_json(port, "/json/list") {
            Ok(targets) => {
                let page = targets.as_array().and_then(|all| {
                    all.iter()
                        .filter(|t| t.get("type").and_then(Value::as_str) == Some("page"))
                        .find_map(|t| t.get("webSocketDebuggerUrl").and_then(Value::as_str))
                });
                match page {
                    Some(url) => return Ok(url.to_string()),
                    None => "no page target yet".to_string(),
                }
            }
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(format!("launch: GET /json/list: {last}"));
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// A JSON body by a plain HTTP/1.1 GET on loopback (chromium's DevTools
/// server refuses HTTP/1.0). The body is `Content-Length` bytes long.
fn http_get_json(port: u16, path: &str) -> Result<Value, String> {
    let mut stream =
        TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connecting: {e}"))?;
    stream
        .set_read_timeout(Some(CALL_TIMEOUT))
        .map_err(|e| format!("socket timeout: {e}"))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("sending: {e}"))?;
    let mut response = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut body_start = None;
    loop {
        if let Some(start) = body_start
            && response.len() >= start + content_length(&response[..start])?
        {
            break;
        }
        let n = stream
            .read(&mut chunk)
            .map_err(|e| format!("reading: {e}"))?;
        if n == 0 {
            break;
        }
        response.extend_from_slice(&chunk[..n]);
        if body_start.is_none() {
            body_start = response
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map(|at| at + 4);
        }
    }
    let start = body_start.ok_or_else(|| "an empty or headless response".to_string())?;
    let head = String::from_utf8_lossy(&response[..start]);
    let status = head.lines().next().unwrap_or("");
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(format!("answered {status:?}"));
    }
    serde_json::from_slice(&response[start..]).map_err(|e| format!("not JSON: {e}"))
}

/// The `Content-Length` of a response head (chromium writes no space after
/// the colon).
fn content_length(head: &[u8]) -> Result<usize, String> {
    String::from_utf8_lossy(head)
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .ok_or_else(|| "a response without Content-Length".to_string())
}

fn connect(url: &str) -> Result<WebSocket<TcpStream>, String> {
    let host_port = url
        .strip_prefix("ws://")
        .and_then(|rest| rest.split('/').next())
        .ok_or_else(|| format!("launch: not a ws:// URL: {url}"))?;
    let stream =
        TcpStream::connect(host_port).map_err(|e| format!("launch: connecting to {url}: {e}"))?;
    stream
        .set_read_timeout(Some(CALL_TIMEOUT))
        .map_err(|e| format!("launch: socket timeout: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("launch: socket option: {e}"))?;
    let (socket, _response) = tungstenite::client::client(url, stream)
        .map_err(|e| format!("launch: websocket handshake with {url}: {e}"))?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::{content_length, parse_port};

    #[test]
    fn content_length_with_and_without_a_space() {
        assert_eq!(
            content_length(b"HTTP/1.1 200 OK\r\nContent-Length:1428\r\n\r\n"),
            Ok(1428)
        );
        assert_eq!(
            content_length(b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\n"),
            Ok(7)
        );
        assert!(content_length(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
    }

    #[test]
    fn port_from_the_devtools_line() {
        assert_eq!(
            parse_port("ws://127.0.0.1:41235/devtools/browser/5c1f-aa"),
            Ok(41235)
        );
        assert!(parse_port("wss://127.0.0.1/devtools").is_err());
    }
}
