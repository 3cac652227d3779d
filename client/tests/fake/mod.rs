//! An in-process fake of a ringkv node's client API, for testing the SDK without a cluster.
//!
//! It records every request it receives, answers with canned responses, and can be told to
//! fail the next calls with given statuses or to never answer at all. It is not a store:
//! it keeps no data. Start with [`FakeNode::start`].

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use ringkv_client::proto::kv_server::{Kv, KvServer};
use ringkv_client::proto::{
    DeleteRequest, DeleteResponse, GetRequest, GetResponse, PutRequest, PutResponse, StatusRequest, StatusResponse,
};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

/// What the fake has seen and how it will answer; shared between the test and the server.
#[derive(Default)]
pub struct FakeState {
    calls: AtomicU32,
    hang: AtomicBool,
    failures: Mutex<VecDeque<Status>>,
    pub gets: Mutex<Vec<GetRequest>>,
    pub puts: Mutex<Vec<PutRequest>>,
    pub deletes: Mutex<Vec<DeleteRequest>>,
    /// The `grpc-timeout` header of every call, in order.
    pub grpc_timeouts: Mutex<Vec<Option<String>>>,
    pub get_response: Mutex<GetResponse>,
    pub put_response: Mutex<PutResponse>,
    pub status_response: Mutex<StatusResponse>,
}

pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl FakeState {
    /// How many calls of any method arrived.
    pub fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }

    /// The next calls fail with these statuses, one each, before the fake answers normally.
    pub fn fail_next(&self, statuses: impl IntoIterator<Item = Status>) {
        lock(&self.failures).extend(statuses);
    }

    /// From now on, calls are recorded but never answered.
    pub fn hang(&self) {
        self.hang.store(true, Ordering::SeqCst);
    }

    /// Counts and records a call, then decides its fate: `Err` to fail it now, `Ok` to answer.
    async fn arrive<T>(&self, request: &Request<T>) -> Result<(), Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let header = request
            .metadata()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        lock(&self.grpc_timeouts).push(header);
        if self.hang.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        match lock(&self.failures).pop_front() {
            Some(status) => Err(status),
            None => Ok(()),
        }
    }
}

struct FakeKv {
    state: Arc<FakeState>,
}

#[tonic::async_trait]
impl Kv for FakeKv {
    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        self.state.arrive(&request).await?;
        lock(&self.state.gets).push(request.into_inner());
        Ok(Response::new(lock(&self.state.get_response).clone()))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        self.state.arrive(&request).await?;
        lock(&self.state.puts).push(request.into_inner());
        Ok(Response::new(lock(&self.state.put_response).clone()))
    }

    async fn delete(&self, request: Request<DeleteRequest>) -> Result<Response<DeleteResponse>, Status> {
        self.state.arrive(&request).await?;
        lock(&self.state.deletes).push(request.into_inner());
        Ok(Response::new(DeleteResponse {
            replicas_acked: 2,
            replicas_hinted: 0,
        }))
    }

    async fn status(&self, request: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        self.state.arrive(&request).await?;
        Ok(Response::new(lock(&self.state.status_response).clone()))
    }

    async fn leave(
        &self,
        request: Request<ringkv_client::proto::LeaveRequest>,
    ) -> Result<Response<ringkv_client::proto::LeaveResponse>, Status> {
        self.state.arrive(&request).await?;
        Ok(Response::new(ringkv_client::proto::LeaveResponse {
            node_id: "fake".to_owned(),
        }))
    }

    async fn remove_node(
        &self,
        request: Request<ringkv_client::proto::RemoveNodeRequest>,
    ) -> Result<Response<ringkv_client::proto::RemoveNodeResponse>, Status> {
        self.state.arrive(&request).await?;
        let id = request.into_inner().node_id;
        if id == "unknown" {
            return Err(Status::not_found(format!("{id} is not a member of the cluster")));
        }
        Ok(Response::new(ringkv_client::proto::RemoveNodeResponse {}))
    }
}

/// A running fake node; the server task ends with the test's runtime.
pub struct FakeNode {
    /// `"127.0.0.1:port"`, ready for `ClientBuilder::endpoints`.
    pub endpoint: String,
    pub state: Arc<FakeState>,
}

impl FakeNode {
    /// Serves a fresh fake on an ephemeral port of 127.0.0.1.
    pub async fn start() -> Self {
        Self::start_until("127.0.0.1:0", std::future::pending()).await.0
    }

    /// Serves a fresh fake on `address` until `stop` completes; the handle ends once the
    /// server has stopped and closed its connections.
    pub async fn start_until(
        address: &str,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .expect("bind the fake's port");
        let address = listener.local_addr().expect("local address");
        let state = Arc::new(FakeState::default());
        *lock(&state.put_response) = PutResponse {
            context: Bytes::from_static(b"context-after-put"),
            replicas_acked: 2,
            replicas_hinted: 0,
        };
        let service = KvServer::new(FakeKv {
            state: Arc::clone(&state),
        });
        let served = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), stop)
                .await
                .expect("fake server failed");
        });
        (
            Self {
                endpoint: address.to_string(),
                state,
            },
            served,
        )
    }
}

/// A `host:port` where nothing listens: bound to get a free port, then closed again.
pub fn dead_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    let address: SocketAddr = listener.local_addr().expect("local address");
    drop(listener);
    address.to_string()
}

/// A `host:port` that accepts TCP connections and then never says a word (a hung process).
pub async fn black_hole_endpoint() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind an ephemeral port");
    let address = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    address.to_string()
}
