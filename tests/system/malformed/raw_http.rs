//! Malformed HTTP itself, written by hand over raw TCP: a broken request line,
//! huge or broken headers, broken chunked encoding, a body shorter or longer
//! than its Content-Length. The server answers that connection with a 4xx or
//! closes it, and keeps serving every other connection.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::Cluster;

/// Bound on waiting for one answer: the server's own header timeout is far longer,
/// so a hang here is a failure, not a slow machine.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// Most bytes of an answer read.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// What a connection produced.
#[derive(Debug, PartialEq)]
enum Answer {
    /// A response with this status.
    Status(u16),
    /// The server closed the connection without a response.
    Closed,
}

/// Reads one response (status line, headers, a Content-Length body) or EOF.
async fn read_answer(stream: &mut TcpStream) -> anyhow::Result<Answer> {
    let mut buf = Vec::new();
    let read = async {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_string();
                let status: u16 = head
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| anyhow::anyhow!("not a status line: {head:?}"))?;
                // Skip interim responses (100 Continue).
                if (100..200).contains(&status) {
                    buf.drain(..end + 4);
                    continue;
                }
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                while buf.len() < end + 4 + len {
                    let mut chunk = [0u8; 4096];
                    let n = stream.read(&mut chunk).await?;
                    anyhow::ensure!(n > 0, "connection closed mid-body");
                    buf.extend_from_slice(&chunk[..n]);
                }
                return Ok(Answer::Status(status));
            }
            anyhow::ensure!(buf.len() < MAX_ANSWER_BYTES, "answer too large");
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) if buf.is_empty() => return Ok(Answer::Closed),
                Ok(0) => anyhow::bail!(
                    "closed after a partial answer: {:?}",
                    String::from_utf8_lossy(&buf)
                ),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                // A reset after the server gave up on the request is a close too.
                Err(e) if buf.is_empty() && e.kind() == std::io::ErrorKind::ConnectionReset => {
                    return Ok(Answer::Closed);
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    tokio::time::timeout(ANSWER_TIMEOUT, read)
        .await
        .map_err(|_| anyhow::anyhow!("no answer and no close within {ANSWER_TIMEOUT:?}"))?
}

/// Sends `bytes` on a new connection (then half-closes it when `then_close`) and
/// reads the first answer.
async fn exchange(addr: &str, bytes: &[u8], then_close: bool) -> anyhow::Result<Answer> {
    let mut stream = TcpStream::connect(addr).await?;
    // The server may answer (and close) before it has read everything we send.
    let _ = stream.write_all(bytes).await;
    if then_close {
        let _ = stream.shutdown().await;
    }
    read_answer(&mut stream).await
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nhost: cairn\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_http_gets_a_4xx_or_a_closed_connection_and_others_are_served()
-> anyhow::Result<()> {
    let mut cluster = Cluster::start(1).await?;
    let addr = cluster.nodes[0].addr().to_string();
    // A keep-alive connection opened before, used again after every case.
    let mut kept = TcpStream::connect(&addr).await?;
    kept.write_all(HEALTHZ).await?;
    assert_eq!(read_answer(&mut kept).await?, Answer::Status(200));

    let post = |headers: &str, body: &[u8]| {
        [
            format!("POST /v1/plugins/kv/query HTTP/1.1\r\nhost: cairn\r\n{headers}\r\n")
                .as_bytes(),
            body,
        ]
        .concat()
    };
    let huge_value = "a".repeat(1 << 20);
    let many_headers: String = (0..300).map(|i| format!("x-h{i}: v\r\n")).collect();
    let long_uri = "a".repeat(100_000);
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("garbage request line", b"GARBAGE\r\n\r\n".to_vec(), false),
        (
            "unknown HTTP version",
            b"GET /healthz HTTP/9.9\r\nhost: cairn\r\n\r\n".to_vec(),
            false,
        ),
        ("no HTTP version", b"GET /healthz\r\n\r\n".to_vec(), false),
        (
            "bad method characters",
            b"G@T /healthz HTTP/1.1\r\nhost: cairn\r\n\r\n".to_vec(),
            false,
        ),
        (
            "raw non-ASCII path",
            b"GET /v1/plugins/\xff\xfe HTTP/1.1\r\nhost: cairn\r\n\r\n".to_vec(),
            false,
        ),
        (
            "100 kB URI",
            format!("GET /{long_uri} HTTP/1.1\r\nhost: cairn\r\n\r\n").into_bytes(),
            false,
        ),
        (
            "1 MiB header",
            format!("GET /healthz HTTP/1.1\r\nhost: cairn\r\nx-big: {huge_value}\r\n\r\n")
                .into_bytes(),
            false,
        ),
        (
            "300 headers",
            format!("GET /healthz HTTP/1.1\r\nhost: cairn\r\n{many_headers}\r\n").into_bytes(),
            false,
        ),
        (
            "header without a colon",
            b"GET /healthz HTTP/1.1\r\nhost: cairn\r\nnocolon\r\n\r\n".to_vec(),
            false,
        ),
        (
            "space in a header name",
            b"GET /healthz HTTP/1.1\r\nhost: cairn\r\nbad header: x\r\n\r\n".to_vec(),
            false,
        ),
        (
            "NUL in a header value",
            b"GET /healthz HTTP/1.1\r\nhost: cairn\r\nx-a: b\0c\r\n\r\n".to_vec(),
            false,
        ),
        (
            "obsolete line folding",
            b"GET /healthz HTTP/1.1\r\nhost: cairn\r\nx-a: b\r\n c\r\n\r\n".to_vec(),
            false,
        ),
        (
            "invalid chunk size",
            post("transfer-encoding: chunked\r\n", b"ZZZ\r\nabc\r\n0\r\n\r\n"),
            false,
        ),
        (
            "overflowing chunk size",
            post(
                "transfer-encoding: chunked\r\n",
                b"ffffffffffffffffffffff\r\nabc\r\n0\r\n\r\n",
            ),
            false,
        ),
        (
            "chunked body cut short",
            post("transfer-encoding: chunked\r\n", b"10\r\nabc"),
            true,
        ),
        (
            "content-length and chunked",
            post(
                "content-length: 5\r\ntransfer-encoding: chunked\r\n",
                b"0\r\n\r\n",
            ),
            false,
        ),
        (
            "two content-lengths",
            post("content-length: 5\r\ncontent-length: 6\r\n", b"{}{}{}"),
            false,
        ),
        (
            "non-numeric content-length",
            post("content-length: abc\r\n", b"{}"),
            false,
        ),
        (
            "negative content-length",
            post("content-length: -1\r\n", b"{}"),
            false,
        ),
        (
            "content-length beyond the body, then close",
            post("content-length: 100\r\n", br#"{"get""#),
            true,
        ),
        (
            "content-length short of the body",
            post("content-length: 2\r\n", br#"{"get":{"key":"a"}}"#),
            false,
        ),
    ];
    for (what, bytes, then_close) in &cases {
        let answer = exchange(&addr, bytes, *then_close)
            .await
            .map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
        match answer {
            Answer::Closed => {}
            Answer::Status(s) => assert!((400..500).contains(&s), "{what}: answered {s}"),
        }
        // The connection opened before is still served, and so is a new one.
        kept.write_all(HEALTHZ).await?;
        assert_eq!(
            read_answer(&mut kept).await?,
            Answer::Status(200),
            "after {what}"
        );
        assert_eq!(
            exchange(&addr, HEALTHZ, false).await?,
            Answer::Status(200),
            "after {what}"
        );
    }
    cluster.stop_all().await
}
