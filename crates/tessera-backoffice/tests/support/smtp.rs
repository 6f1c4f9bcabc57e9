//! Test support shared by the back office's test binaries: a real SMTP server on loopback.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener as StdTcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tessera_backoffice::outbox::{MailConfig, MailTls};
use tessera_store::testing::is_ci;
use tokio::sync::mpsc;

/// How long to wait for something a real server should do at once.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A loopback port nothing listens on (it was free a moment ago).
pub fn free_port() -> u16 {
    let listener = StdTcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

pub fn mail_config(port: u16) -> MailConfig {
    MailConfig {
        host: "127.0.0.1".into(),
        port,
        tls: MailTls::None,
        username: None,
        password: None,
        from: "Acme Licensing <licensing@acme.example>".into(),
    }
}

// ---------------------------------------------------------------------------------------------
// A real SMTP server: aiosmtpd in a child process
// ---------------------------------------------------------------------------------------------

/// Runs aiosmtpd on 127.0.0.1:PORT (argv[1]). Each accepted mail is parsed with Python's `email`
/// package and printed as one JSON line; "READY" is printed once the server accepts connections
/// (aiosmtpd's Controller checks that itself). With argv[2] = "auth" it requires a login as
/// tessera / s3cret (over plain text: a test server only). It exits when its stdin closes.
const SMTP_SERVER: &str = r#"
import email, email.policy, json, logging, sys, warnings
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

class Handler:
    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        auth = session.auth_data
        print(json.dumps({
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "login": auth.login.decode() if auth is not None else None,
            "from": str(msg["From"]),
            "to": str(msg["To"]),
            "subject": str(msg["Subject"]),
            "message_id": str(msg["Message-ID"]),
            "date": str(msg["Date"]),
            "content_type": msg.get_content_type(),
            "charset": msg.get_content_charset(),
            "body": msg.get_content().replace("\r\n", "\n"),
        }), flush=True)
        return "250 Message accepted for delivery"

def authenticator(server, session, envelope, mechanism, auth_data):
    ok = auth_data.login == b"tessera" and auth_data.password == b"s3cret"
    return AuthResult(success=ok, handled=False, auth_data=auth_data)

# "Requiring AUTH while not requiring TLS": on loopback, for a test, that is the point.
warnings.simplefilter("ignore")
logging.getLogger("mail.log").setLevel(logging.ERROR)

kwargs = {}
if len(sys.argv) > 2 and sys.argv[2] == "auth":
    kwargs = dict(authenticator=authenticator, auth_required=True, auth_require_tls=False)
controller = Controller(Handler(), hostname="127.0.0.1", port=int(sys.argv[1]), **kwargs)
controller.start()
print("READY", flush=True)
sys.stdin.read()
controller.stop()
"#;

/// A running aiosmtpd; killed when dropped.
pub struct SmtpServer {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
}

impl SmtpServer {
    /// Whether aiosmtpd can be imported; `false` after saying the test is skipped, a failure
    /// under CI.
    pub fn available(test: &str) -> bool {
        let found = Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if found {
            return true;
        }
        let why = format!(
            "{test}: needs a real SMTP server: Python's aiosmtpd is not installed \
             (python3 -m pip install aiosmtpd)"
        );
        assert!(!is_ci(), "{why}; CI must run it");
        let _ = writeln!(std::io::stderr(), "{why}; skipped");
        false
    }

    /// Starts the server on `port` and waits until it accepts connections.
    pub async fn start(port: u16, auth: bool) -> SmtpServer {
        let mut command = Command::new("python3");
        command
            .args(["-c", SMTP_SERVER, &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if auth {
            command.arg("auth");
        }
        let mut child = command.spawn().expect("python3 starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = SmtpServer { child, lines };
        let ready = server.next_line().await;
        assert_eq!(ready, "READY", "aiosmtpd did not start");
        server
    }

    async fn next_line(&mut self) -> String {
        match tokio::time::timeout(PATIENCE, self.lines.recv()).await {
            Ok(Some(line)) => line,
            Ok(None) => panic!("aiosmtpd exited (see its output above)"),
            Err(_) => panic!("aiosmtpd said nothing within {PATIENCE:?}"),
        }
    }

    /// The next mail the server accepted, as parsed by Python's `email` package.
    pub async fn next_mail(&mut self) -> Value {
        serde_json::from_str(&self.next_line().await).unwrap()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
