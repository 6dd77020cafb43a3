//! The carriers as test doubles, one module per provider: its cloud (the REST API warmline
//! calls to transfer, recording every request with its arrival time), how it signs the
//! webhooks it sends, and its media client (the caller's side of the media protocol, sans-IO:
//! frames built and read here, sent by whoever drives the call).
//!
//! Two drivers use them: the load generator, whose callers keep a real-time clock, and the
//! end-to-end tests, which step a call frame by frame and assert on every message. Both talk
//! to warmline exactly as the provider does, so a protocol detail fixed here is fixed for both.
//!
//! Everything binds 127.0.0.1 only.

pub mod asterisk;
pub mod plivo;
pub mod signalwire;
pub mod telnyx;
pub mod twilio;

use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::telephony::media::Frame;

/// A lock that only guards plain data: a panicked holder leaves nothing half-done.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A fake's HTTP server; dropping it stops the server.
#[derive(Debug)]
pub struct Served {
    pub addr: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl Served {
    /// Keeps the server running for as long as the runtime lives (tests that never stop it).
    pub fn detach(mut self) -> SocketAddr {
        self.task.take();
        self.addr
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Serves `app` on 127.0.0.1:`port` (0: any free port).
pub async fn serve(app: Router, port: u16) -> std::io::Result<Served> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(Served {
        addr,
        task: Some(task),
    })
}

/// What a fake received, in order, with a way to wait for a particular entry.
#[derive(Debug)]
pub struct Journal<T> {
    items: Mutex<Vec<T>>,
    changed: Notify,
}

impl<T> Default for Journal<T> {
    fn default() -> Self {
        Journal {
            items: Mutex::default(),
            changed: Notify::new(),
        }
    }
}

impl<T: Clone> Journal<T> {
    pub fn push(&self, item: T) {
        lock(&self.items).push(item);
        self.changed.notify_waiters();
    }

    pub fn all(&self) -> Vec<T> {
        lock(&self.items).clone()
    }

    pub fn matching(&self, pred: impl Fn(&T) -> bool) -> Vec<T> {
        lock(&self.items)
            .iter()
            .filter(|t| pred(t))
            .cloned()
            .collect()
    }

    pub fn first(&self, pred: impl Fn(&T) -> bool) -> Option<T> {
        lock(&self.items).iter().find(|t| pred(t)).cloned()
    }

    /// The first entry matching `pred`, as soon as there is one.
    pub async fn wait(&self, pred: impl Fn(&T) -> bool) -> T {
        loop {
            // Registered before looking, so an entry pushed in between still wakes us.
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(t) = self.first(&pred) {
                return t;
            }
            notified.await;
        }
    }

    /// [`Journal::wait`], giving up after `limit`.
    pub async fn wait_for(&self, pred: impl Fn(&T) -> bool, limit: Duration) -> Option<T> {
        tokio::time::timeout(limit, self.wait(pred)).await.ok()
    }
}

/// `Authorization: Basic …` for `user:password`.
pub fn basic_auth(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

/// A JSON message as a WebSocket text frame.
pub(crate) fn text(v: serde_json::Value) -> Frame {
    Frame::Text(v.to_string())
}

/// Form parameters as owned pairs (what the signature functions take).
pub fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The first `<tag …>`'s attribute, unescaped.
pub fn xml_attr(xml: &str, tag: &str, name: &str) -> Option<String> {
    let open = find_tag(xml, tag)?;
    let element = &xml[open..open + xml[open..].find('>')?];
    let key = format!(" {name}=\"");
    let start = element.find(&key)? + key.len();
    let len = element[start..].find('"')?;
    Some(xml_unescape(&element[start..start + len]))
}

/// The text inside the first `<tag …>…</tag>`, unescaped.
pub fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let open = find_tag(xml, tag)?;
    let start = open + xml[open..].find('>')? + 1;
    let len = xml[start..].find(&format!("</{tag}>"))?;
    Some(xml_unescape(&xml[start..start + len]))
}

/// Where `<tag` starts as a whole element name (`<Stream` but not `<StreamX`).
fn find_tag(xml: &str, tag: &str) -> Option<usize> {
    let open = format!("<{tag}");
    let mut from = 0;
    while let Some(i) = xml[from..].find(&open) {
        let at = from + i;
        match xml[at + open.len()..].chars().next() {
            Some(' ' | '>' | '/') => return Some(at),
            _ => from = at + 1,
        }
    }
    None
}

pub fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// What warmline sent the caller's side of a media connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineEvent {
    /// Audio for the caller, as 8 kHz μ-law.
    Audio(Vec<u8>),
    /// A mark to return once the audio before it has played.
    Mark(String),
    /// Drop the audio not yet played (barge-in).
    Clear,
    /// warmline ended the media connection on purpose (AudioSocket's hang-up frame).
    HangUp,
    /// Anything else, by its event name (or a short description).
    Other(String),
}

/// A media client of one provider: the caller's side of its media protocol, no IO.
#[derive(Debug)]
pub enum MediaClient {
    /// Twilio Media Streams (also SignalWire's `<Stream>`).
    Twilio(twilio::MediaClient),
    Plivo(plivo::MediaClient),
    Telnyx(telnyx::MediaClient),
    /// Asterisk AudioSocket.
    AudioSocket(asterisk::MediaClient),
}

impl MediaClient {
    /// What the provider sends before any audio (`connected`, `start`, the UUID frame).
    pub fn hello(&mut self) -> Vec<Frame> {
        match self {
            MediaClient::Twilio(c) => c.hello(),
            MediaClient::Plivo(c) => c.hello(),
            MediaClient::Telnyx(c) => c.hello(),
            MediaClient::AudioSocket(c) => c.hello(),
        }
    }

    /// One 20 ms frame of the caller's μ-law audio.
    pub fn audio(&mut self, ulaw: &[u8]) -> Frame {
        match self {
            MediaClient::Twilio(c) => c.audio(ulaw),
            MediaClient::Plivo(c) => c.audio(ulaw),
            MediaClient::Telnyx(c) => c.audio(ulaw),
            MediaClient::AudioSocket(c) => c.audio(ulaw),
        }
    }

    pub fn dtmf(&mut self, digit: char) -> Frame {
        match self {
            MediaClient::Twilio(c) => c.dtmf(digit),
            MediaClient::Plivo(c) => c.dtmf(digit),
            MediaClient::Telnyx(c) => c.dtmf(digit),
            MediaClient::AudioSocket(c) => c.dtmf(digit),
        }
    }

    /// The audio before mark `name` has played.
    pub fn played(&mut self, name: &str) -> Option<Frame> {
        match self {
            MediaClient::Twilio(c) => Some(c.played(name)),
            MediaClient::Plivo(c) => Some(c.played(name)),
            MediaClient::Telnyx(c) => Some(c.played(name)),
            MediaClient::AudioSocket(_) => None,
        }
    }

    /// The acknowledgement of a clear, where the protocol has one (Plivo `clearedAudio`).
    pub fn cleared(&mut self) -> Option<Frame> {
        match self {
            MediaClient::Plivo(c) => Some(c.cleared()),
            _ => None,
        }
    }

    /// Whether a clear hands back the marks it dropped (Twilio and Telnyx do; Plivo answers
    /// a checkpoint only if the audio before it was played).
    pub fn clear_returns_marks(&self) -> bool {
        matches!(self, MediaClient::Twilio(_) | MediaClient::Telnyx(_))
    }

    /// The provider ending the stream (before it closes the connection), where it says so.
    pub fn stop(&mut self) -> Option<Frame> {
        match self {
            MediaClient::Twilio(c) => Some(c.stop()),
            MediaClient::Telnyx(c) => Some(c.stop()),
            MediaClient::Plivo(_) | MediaClient::AudioSocket(_) => None,
        }
    }

    /// Whether warmline sends audio all the time (silence between prompts), so only voiced
    /// audio says a prompt is playing.
    pub fn continuous_audio(&self) -> bool {
        matches!(self, MediaClient::AudioSocket(_))
    }

    pub fn read(&mut self, frame: &Frame) -> LineEvent {
        match (self, frame) {
            (MediaClient::Twilio(_), Frame::Text(t)) => twilio::read(t),
            (MediaClient::Plivo(_), Frame::Text(t)) => plivo::read(t),
            (MediaClient::Telnyx(_), Frame::Text(t)) => telnyx::read(t),
            (MediaClient::AudioSocket(_), Frame::Binary(b)) => asterisk::read(b),
            (_, Frame::Text(_)) => LineEvent::Other("unexpected text frame".into()),
            (_, Frame::Binary(_)) => LineEvent::Other("unexpected binary frame".into()),
        }
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A media connection as the provider holds it: a WebSocket, or AudioSocket's TCP stream
/// (one TLV frame per [`Frame::Binary`]). Receiving is cancel-safe, for `select!` loops.
pub enum MediaLink {
    Ws(Box<Ws>),
    Tcp {
        frames: mpsc::Receiver<Vec<u8>>,
        writer: tokio::net::tcp::OwnedWriteHalf,
        reader: JoinHandle<()>,
    },
}

/// Largest TLV payload read back (warmline sends 320-byte frames).
const MAX_TLV: usize = 64 * 1024;

impl MediaLink {
    pub async fn websocket(url: &str) -> Result<MediaLink, tokio_tungstenite::tungstenite::Error> {
        let (ws, _) = tokio_tungstenite::connect_async(url).await?;
        Ok(MediaLink::Ws(Box::new(ws)))
    }

    pub async fn tcp(addr: SocketAddr) -> std::io::Result<MediaLink> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (mut read, writer) = stream.into_split();
        let (tx, frames) = mpsc::channel(64);
        // A read of a frame interrupted half-way would lose the stream's framing, so one
        // task owns the reading and hands out whole frames.
        let reader = tokio::spawn(async move {
            loop {
                let mut header = [0u8; 3];
                if read.read_exact(&mut header).await.is_err() {
                    return;
                }
                let len = usize::from(u16::from_be_bytes([header[1], header[2]]));
                if len > MAX_TLV {
                    return;
                }
                let mut frame = header.to_vec();
                frame.resize(3 + len, 0);
                if read.read_exact(&mut frame[3..]).await.is_err() || tx.send(frame).await.is_err()
                {
                    return;
                }
            }
        });
        Ok(MediaLink::Tcp {
            frames,
            writer,
            reader,
        })
    }

    /// False once the connection is gone.
    pub async fn send(&mut self, frame: Frame) -> bool {
        match (self, frame) {
            (MediaLink::Ws(ws), Frame::Text(t)) => ws.send(Message::Text(t.into())).await.is_ok(),
            (MediaLink::Ws(ws), Frame::Binary(b)) => {
                ws.send(Message::Binary(b.into())).await.is_ok()
            }
            (MediaLink::Tcp { writer, .. }, Frame::Binary(b)) => writer.write_all(&b).await.is_ok(),
            (MediaLink::Tcp { .. }, Frame::Text(_)) => false,
        }
    }

    /// The next frame from warmline; `None` once the connection is closed.
    pub async fn recv(&mut self) -> Option<Frame> {
        match self {
            MediaLink::Ws(ws) => loop {
                match ws.next().await? {
                    Ok(Message::Text(t)) => return Some(Frame::Text(t.to_string())),
                    Ok(Message::Binary(b)) => return Some(Frame::Binary(b.to_vec())),
                    Ok(Message::Close(_)) | Err(_) => return None,
                    Ok(_) => continue,
                }
            },
            MediaLink::Tcp { frames, .. } => frames.recv().await.map(Frame::Binary),
        }
    }

    pub async fn close(&mut self) {
        match self {
            MediaLink::Ws(ws) => {
                let _ = tokio_tungstenite::WebSocketStream::close(&mut **ws, None).await;
            }
            MediaLink::Tcp { writer, .. } => {
                let _ = writer.shutdown().await;
            }
        }
    }
}

impl Drop for MediaLink {
    fn drop(&mut self) {
        if let MediaLink::Tcp { reader, .. } = self {
            reader.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_helpers_find_whole_elements_and_unescape() {
        let xml = r#"<Response><StreamX a="no"/><Stream url="ws://h/m?a=1&amp;b=2">ws://x</Stream></Response>"#;
        assert_eq!(
            xml_attr(xml, "Stream", "url").as_deref(),
            Some("ws://h/m?a=1&b=2")
        );
        assert_eq!(xml_text(xml, "Stream").as_deref(), Some("ws://x"));
        assert_eq!(xml_attr(xml, "Dial", "x"), None);
    }

    #[tokio::test]
    async fn a_journal_wakes_a_waiter_for_a_later_entry() {
        let j = std::sync::Arc::new(Journal::<u32>::default());
        let waiter = {
            let j = j.clone();
            tokio::spawn(async move { j.wait(|&n| n > 1).await })
        };
        j.push(1);
        tokio::task::yield_now().await;
        j.push(2);
        assert_eq!(waiter.await.unwrap(), 2);
        assert_eq!(
            j.wait_for(|&n| n > 5, Duration::from_millis(10)).await,
            None
        );
        assert_eq!(j.matching(|&n| n >= 1), [1, 2]);
    }
}
