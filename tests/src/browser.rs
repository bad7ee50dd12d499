//! A headless Chromium driven over the DevTools protocol, for the browser
//! view's end-to-end test. It runs inside a network namespace the test
//! made (one of its namespace hosts, whose only way out ends in the test's
//! switch namespace), with a throw-away profile and Chromium's background
//! services off, and talks to the test over a pipe (`--remote-debugging-pipe`:
//! JSON messages separated by NUL on its fds 3 and 4), not a port.

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};

/// Where Debian's package puts it.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// One browser with one page.
pub struct Browser {
    child: Child,
    to: ChildStdin,
    from: BufReader<ChildStdout>,
    next_id: u64,
    session: String,
    /// DevTools events received so far (method and params).
    pub events: VecDeque<Value>,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium inside network namespace `netns` with one blank page.
    pub async fn launch(netns: &str) -> anyhow::Result<Browser> {
        let profile = tempfile::tempdir()?;
        let flags = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--remote-debugging-pipe",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-default-apps",
            "--disable-extensions",
            "--disable-sync",
            "--disable-domain-reliability",
            "--disable-client-side-phishing-detection",
            "--metrics-recording-only",
            "--disable-features=Translate,MediaRouter,OptimizationHints,AutofillServerCommunication",
            "--window-size=1400,1000",
        ];
        // fds 3 and 4 are the pipe's ends: the shell makes them from our
        // stdin and stdout, then points 0 and 1 elsewhere.
        let script = format!(
            "exec {CHROMIUM} {} --user-data-dir={} about:blank 3<&0 4>&1 </dev/null >/dev/null",
            flags.join(" "),
            profile.path().display()
        );
        let mut child = tokio::process::Command::new("ip")
            .args(["netns", "exec", netns, "sh", "-c", &script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .context("chromium")?;
        let to = child.stdin.take().ok_or_else(|| anyhow!("no stdin"))?;
        let from = BufReader::new(child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?);
        let mut b = Browser {
            child,
            to,
            from,
            next_id: 0,
            session: String::new(),
            events: VecDeque::new(),
            _profile: profile,
        };
        let target = b
            .call_on(None, "Target.createTarget", json!({"url": "about:blank"}))
            .await?;
        let target_id = target["targetId"]
            .as_str()
            .ok_or_else(|| anyhow!("no target: {target}"))?
            .to_string();
        let attached = b
            .call_on(
                None,
                "Target.attachToTarget",
                json!({"targetId": target_id, "flatten": true}),
            )
            .await?;
        b.session = attached["sessionId"]
            .as_str()
            .ok_or_else(|| anyhow!("no session: {attached}"))?
            .to_string();
        b.call("Network.enable", json!({})).await?;
        b.call("Page.enable", json!({})).await?;
        Ok(b)
    }

    async fn read_message(&mut self) -> anyhow::Result<Value> {
        let mut buf = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(30), self.from.read_until(0, &mut buf))
            .await
            .context("chromium did not answer")??;
        if n == 0 {
            bail!("chromium exited");
        }
        if buf.last() == Some(&0) {
            buf.pop();
        }
        Ok(serde_json::from_slice(&buf)?)
    }

    async fn call_on(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> anyhow::Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg)?;
        bytes.push(0);
        self.to.write_all(&bytes).await?;
        loop {
            let m = self.read_message().await?;
            if m["id"].as_u64() == Some(id) {
                if let Some(e) = m.get("error") {
                    bail!("{method}: {e}");
                }
                return Ok(m["result"].clone());
            }
            if m.get("method").is_some() {
                self.events.push_back(m);
            }
        }
    }

    /// Calls `method` on the page.
    pub async fn call(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        let session = self.session.clone();
        self.call_on(Some(&session), method, params).await
    }

    /// Loads `url` in the page.
    pub async fn navigate(&mut self, url: &str) -> anyhow::Result<()> {
        let r = self.call("Page.navigate", json!({"url": url})).await?;
        if let Some(e) = r.get("errorText") {
            bail!("navigating to {url}: {e}");
        }
        Ok(())
    }

    /// Evaluates `expression` in the page: its value (JSON-able).
    pub async fn eval(&mut self, expression: &str) -> anyhow::Result<Value> {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true}),
            )
            .await?;
        if let Some(e) = r.get("exceptionDetails") {
            bail!("{expression}: {e}");
        }
        Ok(r["result"]["value"].clone())
    }

    /// Every URL the page asked for so far (the network log).
    pub fn requested_urls(&self) -> Vec<String> {
        self.events
            .iter()
            .filter(|e| e["method"] == "Network.requestWillBeSent")
            .filter_map(|e| e["params"]["request"]["url"].as_str().map(str::to_string))
            .collect()
    }

    /// A PNG of the page.
    pub async fn screenshot(&mut self) -> anyhow::Result<Vec<u8>> {
        let r = self
            .call(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true}),
            )
            .await?;
        let data = r["data"].as_str().ok_or_else(|| anyhow!("no screenshot"))?;
        decode_base64(data)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Chromium and its helpers are one process group (ours to end).
        if let Some(pid) = self.child.id() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Standard base64 (the screenshot's encoding).
fn decode_base64(s: &str) -> anyhow::Result<Vec<u8>> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut value = [255u8; 256];
    for (i, c) in ALPHABET.iter().enumerate() {
        value[*c as usize] = i as u8;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|c| *c != b'=' && !c.is_ascii_whitespace()) {
        let v = value[c as usize];
        if v == 255 {
            bail!("not base64: {:?}", c as char);
        }
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64() {
        assert_eq!(decode_base64("aGVsbG8=").expect("decodes"), b"hello");
        assert!(decode_base64("a*").is_err());
    }
}
