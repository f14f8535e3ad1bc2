//! An in-memory CQL server for tests: `kassandra` behind a small accept loop, on a thread
//! of its own (its session isn't `Send`). It can be stopped (every connection dropped, the
//! port closed) and started again on the same port with the same data, as a ScyllaDB node
//! restarts with its disk.
//!
//! kassandra is right about connecting, schema creation, prepared inserts and batches. It
//! ignores clustering ranges, ordering and TTL, and refuses range reads (their extra bind
//! values): never assert those against it (`../shared/notes/test-infra.md`).

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;

use futures_util::{SinkExt, StreamExt};
use kassandra::error::DbError;
use kassandra::frame::request::Request;
use kassandra::frame::response::Response;
use kassandra::frame::response::error::Error;
use kassandra::frame::{request_stream, response_sink};
use kassandra::session::KassandraSession;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

type Session = Rc<RefCell<KassandraSession>>;

enum Command {
    Stop(oneshot::Sender<()>),
    Start(oneshot::Sender<()>),
    Rows {
        keyspace: String,
        table: String,
        reply: oneshot::Sender<usize>,
    },
}

/// A running (or stopped) kassandra server; quits when dropped.
pub struct Kassandra {
    addr: SocketAddr,
    commands: mpsc::UnboundedSender<Command>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Kassandra {
    /// Starts a server with no data on a free loopback port.
    pub fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
        let addr = listener.local_addr().expect("address");
        listener.set_nonblocking(true).expect("nonblocking");
        let (commands, rx) = mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name("kassandra".into())
            .spawn(move || serve(listener, rx))
            .expect("spawn the server thread");
        Self {
            addr,
            commands,
            thread: Some(thread),
        }
    }

    /// Where it listens: `host:port` for a driver.
    pub fn node(&self) -> String {
        self.addr.to_string()
    }

    /// Drops every connection and closes the port; the data stays.
    pub fn stop(&self) {
        let (ack, done) = oneshot::channel();
        self.commands
            .send(Command::Stop(ack))
            .expect("server running");
        done.blocking_recv().expect("stopped");
    }

    /// Listens again on the same port, with the data it had.
    pub fn restart(&self) {
        let (ack, done) = oneshot::channel();
        self.commands
            .send(Command::Start(ack))
            .expect("server running");
        done.blocking_recv().expect("started");
    }

    /// How many rows `keyspace.table` holds.
    pub fn rows(&self, keyspace: &str, table: &str) -> usize {
        let (reply, rows) = oneshot::channel();
        self.commands
            .send(Command::Rows {
                keyspace: keyspace.into(),
                table: table.into(),
                reply,
            })
            .expect("server running");
        rows.blocking_recv().expect("rows")
    }
}

impl Drop for Kassandra {
    fn drop(&mut self) {
        // Closing the command channel ends the server.
        let (commands, _) = mpsc::unbounded_channel();
        drop(std::mem::replace(&mut self.commands, commands));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(listener: std::net::TcpListener, mut commands: mpsc::UnboundedReceiver<Command>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    let session: Session = Rc::new(RefCell::new(KassandraSession::new()));
    local.block_on(&runtime, async move {
        let addr = listener.local_addr().expect("address");
        let mut listener = Some(TcpListener::from_std(listener).expect("listener"));
        let mut connections: Vec<tokio::task::JoinHandle<()>> = Vec::new();
        loop {
            let accepted = async {
                match &listener {
                    Some(l) => l.accept().await.ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                accepted = accepted => {
                    if let Some((stream, _)) = accepted {
                        connections.retain(|c| !c.is_finished());
                        connections.push(tokio::task::spawn_local(client(stream, session.clone())));
                    }
                }
                command = commands.recv() => match command {
                    None => return,
                    Some(Command::Stop(ack)) => {
                        listener = None;
                        for c in connections.drain(..) {
                            c.abort();
                        }
                        tokio::task::yield_now().await;
                        let _ = ack.send(());
                    }
                    Some(Command::Start(ack)) => {
                        listener = Some(TcpListener::bind(addr).await.expect("listen again"));
                        let _ = ack.send(());
                    }
                    Some(Command::Rows { keyspace, table, reply }) => {
                        let snapshot = session.borrow().data_snapshot();
                        let rows = snapshot
                            .0
                            .get(&keyspace)
                            .and_then(|k| k.tables.get(&table))
                            .map_or(0, |t| t.rows.len());
                        let _ = reply.send(rows);
                    }
                }
            }
        }
    });
}

async fn client(mut stream: TcpStream, session: Session) {
    let (mut read, mut write) = stream.split();
    let mut requests = request_stream(&mut read);
    let mut responses = response_sink(&mut write);
    while let Some(Ok((frame, opcode, data))) = requests.next().await {
        let response = match Request::deserialize(opcode, &data, frame.flags) {
            Ok(request) => answer(&session, request),
            Err(error) => Response::Error(Error::new(
                DbError::ProtocolError,
                format!("kassandra can't parse this request: {error}"),
            )),
        };
        if responses.send((response, frame.stream)).await.is_err() {
            break;
        }
    }
}

fn answer(session: &Session, request: Request<'_>) -> Response {
    let mut session = session.borrow_mut();
    let result = match request {
        Request::StartUp(_) | Request::Register { .. } => return Response::Ready,
        Request::Options => return Response::options(),
        Request::Query(query) => session.process(query),
        Request::Prepare(query) => session.prepare(query),
        Request::Execute(execute) => session.execute(execute),
        Request::Batch(batch) => session.process_batch(batch),
        Request::AuthResponse => {
            return Response::Error(Error::new(
                DbError::ProtocolError,
                "authentication is not served",
            ));
        }
    };
    match result {
        Ok(result) => Response::Result(result),
        Err(error) => Response::Error(error),
    }
}
