//! The edge as clients see it on the wire: HTTP/1.1 header names in their canonical
//! spelling (raw bytes), and answers given before the request body was read arriving
//! whole over HTTP/2 and HTTP/1.1 (real curl).

use crate::common::{Backend, TestServer};
use tokio::io::AsyncReadExt;

/// Sends `request` as is over TLS (ALPN http/1.1) and returns the raw answer's head: the
/// status line and header lines, exactly as the server wrote them.
async fn raw_http1_head(s: &TestServer, request: &[u8]) -> String {
    let mut tls = crate::common::raw_http1_connection(s, request).await;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !out.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), tls.read(&mut buf))
            .await
            .expect("an answer within 10 s")
            .unwrap();
        assert!(n > 0, "connection closed before the head ended: {out:?}");
        out.extend_from_slice(&buf[..n]);
    }
    let end = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    String::from_utf8(out[..end].to_vec()).unwrap()
}

/// The header names of a raw head, as written.
fn names(head: &str) -> Vec<&str> {
    head.split("\r\n")
        .skip(1)
        .map(|l| l.split(':').next().unwrap())
        .collect()
}

/// Every header name in its canonical spelling: the listed ones exactly, every other
/// one in title case.
fn assert_canonical(head: &str) {
    for name in names(head) {
        let canonical = match name.to_ascii_lowercase().as_str() {
            "www-authenticate" => "WWW-Authenticate".to_string(),
            "etag" => "ETag".to_string(),
            lower => lower
                .split('-')
                .map(|p| {
                    let mut c = p.chars();
                    c.next()
                        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                        .unwrap_or_default()
                })
                .collect::<Vec<_>>()
                .join("-"),
        };
        assert_eq!(name, canonical, "in\n{head}");
    }
}

/// Embedded EST clients match header names byte for byte: HTTP/1.1 answers spell them
/// `Content-Type`, `Content-Transfer-Encoding`, `WWW-Authenticate`, `Retry-After`,
/// `Replay-Nonce`, `Location`, `Link`; a request's own spelling is never echoed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http1_header_names_are_canonical() {
    let s = TestServer::start(Backend::Sqlite).await;
    let inter = s.app().defaults.intermediate_id.clone();

    let head = raw_http1_head(
        &s,
        b"GET /.well-known/est/cacerts HTTP/1.1\r\nhost: localhost\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.contains("\r\nContent-Type: application/pkcs7-mime"),
        "{head}"
    );
    assert!(
        head.contains("\r\nContent-Transfer-Encoding: base64"),
        "{head}"
    );
    assert_canonical(&head);

    // 401 from EST: WWW-Authenticate exactly so. The request spells its headers oddly;
    // the answer does not copy that.
    let body = "MIIB";
    let req = format!(
        "POST /.well-known/est/simpleenroll HTTP/1.1\r\nhost: localhost\r\n\
         cOnTeNt-TyPe: application/pkcs10\r\nwww-AUTHENTICATE: x\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    let head = raw_http1_head(&s, req.as_bytes()).await;
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    assert!(
        head.contains("\r\nWWW-Authenticate: Basic realm=\"Vellum EST\""),
        "{head}"
    );
    assert!(head.contains("\r\nContent-Type: text/plain"), "{head}");
    assert_canonical(&head);

    // The admin API: problem+json under Content-Type.
    let head = raw_http1_head(
        &s,
        b"GET /admin/v1/cas HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    assert!(
        head.contains("\r\nContent-Type: application/problem+json"),
        "{head}"
    );
    assert_canonical(&head);

    // ACME: Replay-Nonce, Link, Cache-Control.
    let req = format!("GET /acme/{inter}/new-nonce HTTP/1.1\r\nhost: localhost\r\n\r\n");
    let head = raw_http1_head(&s, req.as_bytes()).await;
    assert!(head.contains("\r\nReplay-Nonce: "), "{head}");
    assert!(head.contains("\r\nLink: "), "{head}");
    assert!(head.contains("\r\nCache-Control: no-store"), "{head}");
    assert_canonical(&head);

    // A 413 (connection close) and a 405 (Allow).
    let req = format!(
        "PUT /admin/v1/cas HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
         authorization: Bearer {}\r\ncontent-length: 2\r\n\r\n{{}}",
        s.token
    );
    let head = raw_http1_head(&s, req.as_bytes()).await;
    assert!(head.starts_with("HTTP/1.1 405"), "{head}");
    assert!(head.contains("\r\nAllow: "), "{head}");
    assert_canonical(&head);
    s.stop().await;
}

/// One curl run: (exit code, status, body, stderr).
async fn curl(s: &TestServer, http: &str, args: &[&str], url: &str) -> (i32, u16, String, String) {
    let out_file = s
        .dir
        .path()
        .join(format!("curl-out-{}", uuid::Uuid::new_v4()));
    let root = s.data_dir().join("root.pem");
    let out = tokio::process::Command::new("curl")
        .arg(http)
        .args(["-sS", "--max-time", "60", "--cacert"])
        .arg(&root)
        .arg("-o")
        .arg(&out_file)
        .args(["-w", "%{http_code}"])
        .args(args)
        .arg(format!("{}{url}", s.base))
        .output()
        .await
        .expect("curl is installed (apt-get install curl)");
    let status = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    let body = std::fs::read_to_string(&out_file).unwrap_or_default();
    let _ = std::fs::remove_file(&out_file);
    (
        out.status.code().unwrap_or(-1),
        status,
        body,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Answers given before the request body was read (no token, unknown path, wrong
/// method, a body over the limit) reach curl whole, over HTTP/2 and HTTP/1.1, with their
/// status and problem body; so do ACME's and EST's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn early_answers_arrive_whole_over_http2_and_http1() {
    let s = TestServer::start(Backend::Sqlite).await;
    let inter = s.app().defaults.intermediate_id.clone();
    let big = s.dir.path().join("big.json");
    std::fs::write(&big, vec![b' '; 10 * 1024 * 1024]).unwrap();
    let big_arg = format!("@{}", big.display());
    let auth = format!("Authorization: Bearer {}", s.token);
    let json_ct = "Content-Type: application/json";

    struct Case<'a> {
        what: &'a str,
        args: Vec<&'a str>,
        url: String,
        status: u16,
        body_has: &'a str,
    }
    let cases = vec![
        Case {
            what: "no token",
            args: vec!["-X", "POST", "-H", json_ct, "-d", "{}"],
            url: "/admin/v1/cas".into(),
            status: 401,
            body_has: "\"status\":401",
        },
        Case {
            what: "no token, form body (curl -d)",
            args: vec!["-X", "POST", "-d", "{}"],
            url: "/admin/v1/cas".into(),
            status: 401,
            body_has: "Bearer",
        },
        Case {
            what: "unknown path",
            args: vec!["-X", "POST", "-H", &auth, "-H", json_ct, "-d", "{}"],
            url: "/admin/v1/nothing-here".into(),
            status: 404,
            body_has: "no such endpoint",
        },
        Case {
            what: "unknown path outside the API",
            args: vec!["-X", "POST", "-d", "{}"],
            url: "/nothing-here".into(),
            status: 404,
            body_has: "\"status\":404",
        },
        Case {
            what: "wrong method",
            args: vec!["-X", "PUT", "-H", &auth, "-H", json_ct, "-d", "{}"],
            url: "/admin/v1/cas".into(),
            status: 405,
            body_has: "\"status\":405",
        },
        Case {
            what: "wrong method, no body",
            args: vec!["-X", "DELETE", "-H", &auth],
            url: "/admin/v1/cas".into(),
            status: 405,
            body_has: "Allow header",
        },
        Case {
            what: "10 MB chunked body",
            args: vec![
                "-X",
                "POST",
                "-H",
                &auth,
                "-H",
                json_ct,
                "-H",
                "Transfer-Encoding: chunked",
                "--data-binary",
                &big_arg,
            ],
            url: "/admin/v1/cas".into(),
            status: 413,
            body_has: "limit of 1048576 bytes",
        },
        Case {
            what: "10 MB body with a length",
            args: vec![
                "-X",
                "POST",
                "-H",
                &auth,
                "-H",
                json_ct,
                "--data-binary",
                &big_arg,
            ],
            url: "/admin/v1/cas".into(),
            status: 413,
            body_has: "limit",
        },
        Case {
            what: "10 MB body, no token",
            args: vec![
                "-X",
                "POST",
                "-H",
                json_ct,
                "-H",
                "Transfer-Encoding: chunked",
                "--data-binary",
                &big_arg,
            ],
            url: "/admin/v1/cas".into(),
            status: 401,
            body_has: "\"status\":401",
        },
        Case {
            what: "ACME, wrong content type",
            args: vec!["-X", "POST", "-d", "{}"],
            url: format!("/acme/{inter}/new-order"),
            status: 415,
            body_has: "urn:ietf:params:acme:error",
        },
        Case {
            what: "ACME, wrong method",
            args: vec!["-X", "PUT", "-d", "{}"],
            url: format!("/acme/{inter}/new-order"),
            status: 405,
            body_has: "\"status\":405",
        },
        Case {
            what: "EST, no credentials",
            args: vec![
                "-X",
                "POST",
                "-H",
                "Content-Type: application/pkcs10",
                "-d",
                "MIIB",
            ],
            url: "/.well-known/est/simpleenroll".into(),
            status: 401,
            body_has: "",
        },
        Case {
            what: "EST, 10 MB chunked body",
            args: vec![
                "-X",
                "POST",
                "-H",
                "Content-Type: application/pkcs10",
                "-H",
                "Transfer-Encoding: chunked",
                "--data-binary",
                &big_arg,
            ],
            url: "/.well-known/est/simpleenroll".into(),
            status: 413,
            body_has: "",
        },
    ];
    for http in ["--http2", "--http1.1"] {
        for c in &cases {
            let (code, status, body, stderr) = curl(&s, http, &c.args, &c.url).await;
            assert_eq!(
                (code, status),
                (0, c.status),
                "{http} {}: curl exit {code}, status {status}, stderr {stderr}, body {body}",
                c.what
            );
            assert!(
                !body.is_empty() && body.contains(c.body_has),
                "{http} {}: body {body:?}",
                c.what
            );
        }
    }
    // The server is still fine afterwards.
    let (st, _) = s.get("/cas").await;
    assert_eq!(st, reqwest::StatusCode::OK);
    s.stop().await;
}
