//! A media connection as two channels, whatever carries it: a reader task turns WebSocket
//! messages or AudioSocket TLV frames into [`Frame`]s, and a writer task sends frames with
//! a time limit on each. The call driver never touches a socket, so one driver serves every
//! provider, and a peer that stops reading can stall nothing but its own writer.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::log_limit::LogLimit;
use crate::metrics::Metrics;
use crate::telephony::asterisk::audiosocket;
use crate::telephony::media::Frame;

/// Frames read ahead of the driver.
const INBOX: usize = 64;
/// Outbound frames queued for the writer. Prompts are paced ~80 ms ahead, so a full queue
/// (over a second of audio) means the peer has stopped reading.
const OUTBOX: usize = 64;

/// What the reader saw.
#[derive(Debug)]
pub enum Incoming {
    Frame(Frame),
    /// The peer closed the connection.
    Closed,
    /// The connection failed; `kind` labels `wire_errors_total`.
    Failed {
        kind: &'static str,
        detail: String,
    },
}

pub enum Outgoing {
    Frame(Frame),
    /// Close the connection once everything before it is sent.
    Close,
}

/// Both directions of one media connection.
pub struct Link {
    pub rx: mpsc::Receiver<Incoming>,
    pub tx: mpsc::Sender<Outgoing>,
}

static WRITE_LOG: LogLimit = LogLimit::new();

/// Names a WebSocket error for the wire-error metric.
fn ws_error_kind(e: &axum::Error) -> &'static str {
    let text = e.to_string();
    if text.contains("Space limit exceeded")
        || text.contains("too long")
        || text.contains("Capacity")
    {
        "oversized_frame"
    } else if text.to_ascii_lowercase().contains("utf-8") || text.contains("UTF") {
        "non_utf8_text"
    } else {
        "socket_error"
    }
}

/// A media WebSocket (Twilio, SignalWire, …).
pub fn websocket(socket: WebSocket, send_timeout: Duration, metrics: Arc<Metrics>) -> Link {
    let (mut sink, mut stream) = socket.split();
    let (in_tx, rx) = mpsc::channel(INBOX);
    tokio::spawn(
        async move {
            loop {
                let incoming = match stream.next().await {
                    Some(Ok(Message::Text(t))) => Incoming::Frame(Frame::Text(t.to_string())),
                    Some(Ok(Message::Binary(b))) => Incoming::Frame(Frame::Binary(b.to_vec())),
                    Some(Ok(Message::Close(_))) | None => Incoming::Closed,
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => Incoming::Failed {
                        kind: ws_error_kind(&e),
                        detail: e.to_string(),
                    },
                };
                let last = !matches!(incoming, Incoming::Frame(_));
                if in_tx.send(incoming).await.is_err() || last {
                    break;
                }
            }
        }
        .in_current_span(),
    );
    let (tx, mut out_rx) = mpsc::channel::<Outgoing>(OUTBOX);
    tokio::spawn(
        async move {
            while let Some(out) = out_rx.recv().await {
                let (msg, closing) = match out {
                    Outgoing::Frame(Frame::Text(t)) => (Message::Text(t.into()), false),
                    Outgoing::Frame(Frame::Binary(b)) => (Message::Binary(b.into()), false),
                    Outgoing::Close => (Message::Close(None), true),
                };
                if !send_within(send_timeout, sink.send(msg), &metrics).await || closing {
                    break;
                }
            }
        }
        .in_current_span(),
    );
    Link { rx, tx }
}

/// Sends with a deadline; false when the connection is done for.
async fn send_within<E: std::fmt::Display>(
    limit: Duration,
    send: impl std::future::Future<Output = Result<(), E>>,
    metrics: &Metrics,
) -> bool {
    match tokio::time::timeout(limit, send).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "send failed (connection closing)");
            false
        }
        Err(_) => {
            metrics.inc_wire_errors("send_timeout");
            if let Some(suppressed) = WRITE_LOG.permit() {
                tracing::warn!(suppressed, "peer stopped reading: send timed out");
            }
            false
        }
    }
}

/// An AudioSocket TCP connection: each TLV frame becomes one `Frame::Binary` holding the
/// whole frame (header included), for the AudioSocket codec to interpret.
pub fn tlv(stream: TcpStream, send_timeout: Duration, metrics: Arc<Metrics>) -> Link {
    let _ = stream.set_nodelay(true);
    let (mut read, mut write) = stream.into_split();
    let (in_tx, rx) = mpsc::channel(INBOX);
    tokio::spawn(
        async move {
            loop {
                let mut header = [0u8; audiosocket::HEADER];
                let incoming = match read.read_exact(&mut header).await {
                    Ok(_) => {
                        let len = usize::from(u16::from_be_bytes([header[1], header[2]]));
                        if len > audiosocket::MAX_PAYLOAD {
                            Incoming::Failed {
                                kind: "oversized_frame",
                                detail: format!("{len}-byte AudioSocket frame"),
                            }
                        } else {
                            let mut frame = header.to_vec();
                            frame.resize(audiosocket::HEADER + len, 0);
                            match read.read_exact(&mut frame[audiosocket::HEADER..]).await {
                                Ok(_) => Incoming::Frame(Frame::Binary(frame)),
                                Err(_) => Incoming::Closed,
                            }
                        }
                    }
                    // Asterisk closes the socket when the caller hangs up.
                    Err(_) => Incoming::Closed,
                };
                let last = !matches!(incoming, Incoming::Frame(_));
                if in_tx.send(incoming).await.is_err() || last {
                    break;
                }
            }
        }
        .in_current_span(),
    );
    let (tx, mut out_rx) = mpsc::channel::<Outgoing>(OUTBOX);
    tokio::spawn(
        async move {
            while let Some(out) = out_rx.recv().await {
                match out {
                    Outgoing::Frame(Frame::Binary(b)) => {
                        if !send_within(send_timeout, write.write_all(&b), &metrics).await {
                            break;
                        }
                    }
                    Outgoing::Frame(Frame::Text(_)) => {}
                    Outgoing::Close => {
                        let _ = tokio::time::timeout(send_timeout, write.shutdown()).await;
                        break;
                    }
                }
            }
        }
        .in_current_span(),
    );
    Link { rx, tx }
}
