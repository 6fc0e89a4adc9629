use super::*;

fn parsed(head: &str) -> Option<Request<Body>> {
    parse(head.as_bytes())
}

#[test]
fn serves_only_plain_event_stream_gets() {
    let ok = parsed(
        "GET /api/v1/system-register/events?since=3 HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 7\r\n\r\n",
    )
    .expect("an event-stream request");
    assert_eq!(ok.uri(), "/api/v1/system-register/events?since=3");
    assert_eq!(ok.headers()["last-event-id"], "7");
    assert!(parsed("GET /api/v1/system-register/events HTTP/1.1\r\n\r\n").is_some());
    for other in [
        "GET /api/v1/system-register/events HTTP/1.0\r\n\r\n",
        "GET /api/v1/system-register/eventsx HTTP/1.1\r\n\r\n",
        "GET /api/v1/system-register/events/1 HTTP/1.1\r\n\r\n",
        "GET /api/v1/system-register/events HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        "GET /api/v1/system-register/events HTTP/1.1\r\nUpgrade: h2c\r\n\r\n",
        "GET /api/v1/system-register/events HTTP/1.1\r\nBad Header: 1\r\n\r\n",
        "GET /api/v1/system-register/events HTTP/1.1\r\nX: a\x01b\r\n\r\n",
    ] {
        assert!(parsed(other).is_none(), "{other:?} must go to hyper");
    }
}

#[tokio::test]
async fn reads_a_head_that_arrives_a_byte_at_a_time() {
    let head = b"GET /api/v1/system-register/events HTTP/1.1\r\nHost: x\r\n\r\n";
    let (mut client, mut server) = tokio::io::duplex(4096);
    let writer = tokio::spawn(async move {
        for byte in head {
            client.write_all(&[*byte]).await.unwrap();
            tokio::task::yield_now().await;
        }
        client
    });
    let mut buf = Vec::new();
    let request = read_request(&mut server, &mut buf, 1024).await.unwrap();
    assert_eq!(
        request.expect("served here").uri(),
        "/api/v1/system-register/events"
    );
    assert_eq!(buf, head);
    drop(writer.await.unwrap());
}

#[tokio::test]
async fn hands_other_connections_to_hyper_with_what_was_read() {
    for (sent, max) in [
        (&b"POST /api/v1/blueprints HTTP/1.1\r\n\r\n"[..], 1024),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 1024),
        (b"GET /api/v1/system-register/events HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n", 1024),
        (b"GET /api/v1/system-register/events HTTP/1.1\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n", 48),
        (b"GET /api/v1/sys", 1024),
    ] {
        let (mut client, mut server) = tokio::io::duplex(4096);
        client.write_all(sent).await.unwrap();
        drop(client);
        let mut buf = Vec::new();
        let request = read_request(&mut server, &mut buf, max).await.unwrap();
        assert!(request.is_none(), "{sent:?}");
        assert!(sent.starts_with(&buf), "only bytes of the stream are replayed");
        assert!(!buf.is_empty());
    }
}

/// A socket that records each write it is given, taking at most `max_write` bytes of each.
struct Recorder {
    writes: Vec<Vec<u8>>,
    vectored: bool,
    max_write: usize,
}

impl Recorder {
    fn new(vectored: bool, max_write: usize) -> Self {
        Recorder {
            writes: Vec::new(),
            vectored,
            max_write,
        }
    }
}

impl AsyncWrite for Recorder {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let n = buf.len().min(self.max_write);
        self.writes.push(buf[..n].to_vec());
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let mut joined = bufs
            .iter()
            .flat_map(|b| b.iter().copied())
            .collect::<Vec<_>>();
        joined.truncate(self.max_write);
        let n = joined.len();
        self.writes.push(joined);
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.vectored
    }

    fn poll_flush(
        self: Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn parts_of(texts: &[&'static str]) -> Vec<Bytes> {
    texts
        .iter()
        .map(|t| Bytes::from_static(t.as_bytes()))
        .collect()
}

#[tokio::test]
async fn what_is_ready_goes_out_as_one_chunk_in_one_write() {
    let event = [
        "id: 2\ndata: {\"entry\":",
        "{\"document\":",
        "{\"a\":1}",
        "}",
        "}\n\n",
    ];
    let whole = event.concat();
    let chunk = format!("{:x}\r\n{whole}\r\n", whole.len()).into_bytes();
    for vectored in [true, false] {
        // One event's parts, all ready, then the end: one chunk in one write.
        let mut body = futures::stream::iter(parts_of(&event).into_iter().map(Ok::<_, ()>));
        let mut ready = Vec::new();
        assert_eq!(gather(&mut body, &mut ready).await, Some(Ok(())), "the end");
        let mut socket = Recorder::new(vectored, usize::MAX);
        write_chunk(&mut socket, &ready).await.unwrap();
        assert_eq!(
            socket.writes,
            std::slice::from_ref(&chunk),
            "vectored: {vectored}"
        );
    }
    // A socket that takes a few bytes at a time still gets every byte once, in order.
    let mut socket = Recorder::new(true, 3);
    write_chunk(&mut socket, &parts_of(&event)).await.unwrap();
    assert_eq!(socket.writes.concat(), chunk);
    assert!(socket.writes.iter().all(|w| w.len() <= 3));

    // What is not ready yet is not waited for: it will be a chunk of its own.
    let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Bytes, ()>>();
    for part in parts_of(&event) {
        tx.unbounded_send(Ok(part)).unwrap();
    }
    let mut body = rx;
    let mut ready = Vec::new();
    assert_eq!(
        gather(&mut body, &mut ready).await,
        None,
        "the body goes on"
    );
    assert_eq!(ready, parts_of(&event));
    // A failing body: what came before the error is still there to be written.
    tx.unbounded_send(Ok(Bytes::from_static(b"x"))).unwrap();
    tx.unbounded_send(Err(())).unwrap();
    ready.clear();
    assert_eq!(gather(&mut body, &mut ready).await, Some(Err(())));
    assert_eq!(ready, [Bytes::from_static(b"x")]);
    // A gathered chunk never outgrows its bounds.
    let many = (0..MAX_GATHERED_PARTS * 2).map(|_| Ok::<_, ()>(Bytes::from_static(b"x")));
    let mut body = futures::stream::iter(many);
    let mut ready = Vec::new();
    assert_eq!(gather(&mut body, &mut ready).await, None);
    assert_eq!(ready.len(), MAX_GATHERED_PARTS);
}
