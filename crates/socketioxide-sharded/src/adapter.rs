//! The adapter of one namespace: socketioxide's `CoreAdapter` over sharded
//! pub/sub, routing broadcasts by room.
//!
//! The request/response machinery (fetch sockets, rooms, broadcasts with
//! acks) follows socketioxide-redis and reuses socketioxide-core's remote
//! adapter building blocks; what differs is where messages go:
//!
//! | operation | channel |
//! |---|---|
//! | broadcast to rooms (at most `max_rooms_per_split`) | one copy per room channel |
//! | broadcast to no room, or to more rooms | the namespace-wide channel |
//! | operation on one remote socket (`server_id` known) | that server's channel |
//! | every other request (acks, fetch, rooms, disconnect, remote joins) | the namespace-wide channel |
//!
//! A broadcast to several rooms must reach a socket that is in two of them
//! once: copy *i* excludes, besides the caller's `except` rooms, the rooms
//! before it, whose copies reach that socket already.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use fred::clients::SubscriberClient;
use fred::interfaces::{ClientLike, PubsubInterface};
use fred::types::config::Options;
use futures_core::Stream;
use futures_core::future::BoxFuture;
use futures_util::future::{Either, join_all};
use futures_util::{StreamExt, future};
use serde::Serialize;
use serde::de::DeserializeOwned;
use socketioxide_core::adapter::errors::{AdapterError, BroadcastError};
use socketioxide_core::adapter::remote_packet::{
    RequestIn, RequestOut, RequestTypeOut, Response, ResponseTypeId,
};
use socketioxide_core::adapter::request::RemoteRequestHandler;
use socketioxide_core::adapter::stream::{
    AckStream, ChanStream, DropStream, ResponseHandlers, insert_response_handler, wait_responses,
};
use socketioxide_core::adapter::{
    BroadcastOptions, CoreAdapter, CoreLocalAdapter, DefinedAdapter, RemoteSocketData, Room,
    RoomParam, SocketEmitter, Spawnable,
};
use socketioxide_core::packet::Packet;
use socketioxide_core::{Sid, Uid};
use tokio::sync::mpsc;

use crate::channels::Channels;
use crate::dispatch::{Inbox, Shared};
use crate::interest::{Interest, LocalRooms};
use crate::stats::Stats;
use crate::wire::{self, Kind};
use crate::{Error, InitError, ShardedAdapterCtr};

/// The adapter of one namespace. Create it through [`ShardedAdapterCtr`]:
/// `SocketIo::builder().with_adapter::<ShardedAdapter<_>>(ctr)`.
pub struct ShardedAdapter<E> {
    local: CoreLocalAdapter<E>,
    shared: Arc<Shared>,
    uid: Uid,
    namespace: String,
    channels: Channels,
    publish_options: Options,
    responses: Arc<Mutex<ResponseHandlers<Bytes>>>,
    interest: Interest,
}

/// Where a broadcast goes besides the local sockets.
enum Route {
    Local,
    Node(Uid),
    All,
    Rooms,
}

type RemoteAcks = DropStream<ChanStream<Bytes>, Bytes>;

impl<E> DefinedAdapter for ShardedAdapter<E> {}

impl<E: SocketEmitter> CoreAdapter<E> for ShardedAdapter<E> {
    type Error = Error;
    type State = ShardedAdapterCtr;
    type AckStream = Either<E::AckStream, AckStream<E, RemoteAcks, Bytes>>;
    type InitRes = InitRes;

    fn new(state: &Self::State, local: CoreLocalAdapter<E>) -> Self {
        let shared = state.shared.clone();
        let namespace = local.path().to_string();
        let channels = Channels::new(&shared.config.prefix, &namespace);
        let publish_options = Options {
            // While the connection is down a publish fails at once instead of
            // queueing until its deadline: the local sockets have the packet
            // already, and a chat message is better late than blocking.
            fail_fast: true,
            timeout: (!shared.config.publish_timeout.is_zero())
                .then_some(shared.config.publish_timeout),
            ..Options::default()
        };
        Self {
            uid: local.server_id(),
            local,
            shared,
            namespace,
            channels,
            publish_options,
            responses: Arc::new(Mutex::new(ResponseHandlers::new())),
            interest: Interest::new(),
        }
    }

    fn init(self: Arc<Self>, on_success: impl FnOnce() + Send + 'static) -> Self::InitRes {
        InitRes(Box::pin(async move {
            if self.namespace.is_empty() || self.namespace.contains('#') {
                return Err(InitError::MalformedNamespace);
            }
            let inbox: Arc<dyn Inbox> = Arc::new(NamespaceInbox(Arc::downgrade(&self)));
            self.shared.register(&self.namespace, inbox);
            let members: Weak<dyn LocalRooms> = Arc::downgrade(&self) as Weak<dyn LocalRooms>;
            self.interest
                .start(
                    &self.shared,
                    self.channels.clone(),
                    vec![self.channels.all(), self.channels.node(self.uid)],
                    members,
                )
                .await
                .map_err(InitError::Redis)?;
            on_success();
            Ok(())
        }))
    }

    async fn close(&self) -> Result<(), Self::Error> {
        self.shared.deregister(&self.namespace);
        self.interest.close().await;
        Ok(())
    }

    /// The servers subscribed to this namespace's channel, this one included.
    async fn server_count(&self) -> Result<u16, Self::Error> {
        let (_, count): (String, u16) = self
            .shared
            .client
            .pubsub_shardnumsub(self.channels.all())
            .await?;
        Ok(count)
    }

    /// Delivers to the local sockets, then publishes to the servers that may
    /// hold the others. An `Adapter` error means some servers may have missed
    /// the packet; the local sockets have it either way.
    async fn broadcast(
        &self,
        packet: Packet,
        opts: BroadcastOptions,
    ) -> Result<(), BroadcastError> {
        let route = self.route(&opts);
        if let Route::Local = route {
            return self
                .local
                .broadcast(packet, opts)
                .map_err(BroadcastError::from);
        }
        let frames = self
            .broadcast_frames(&packet, &opts, route)
            .map_err(AdapterError::from)?;
        let local = self.local.broadcast(packet, opts);
        self.publish_all(frames).await.map_err(AdapterError::from)?;
        local.map_err(BroadcastError::from)
    }

    /// Follows socketioxide-redis: every other server first answers how many
    /// acks to expect, then sends them as they come.
    async fn broadcast_with_ack(
        &self,
        packet: Packet,
        opts: BroadcastOptions,
        timeout: Option<Duration>,
    ) -> Result<Self::AckStream, Self::Error> {
        if opts.is_local(self.uid) {
            let (local, _) = self.local.broadcast_with_ack(packet, opts, timeout);
            return Ok(Either::Left(local));
        }
        let req = RequestOut::new(self.uid, RequestTypeOut::BroadcastWithAck(&packet), &opts)
            .with_ack_timeout(timeout);
        let req_id = req.id;
        let remote_servers = match opts.server_id {
            Some(_) => 1,
            None => self.server_count().await?.saturating_sub(1),
        };
        let (tx, rx) =
            mpsc::channel(self.shared.config.ack_response_buffer + usize::from(remote_servers));
        self.responses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(req_id, tx);
        // Removes the handler when dropped, also if the request is never sent.
        let remote = DropStream::new(ChanStream::new(rx), self.responses.clone(), req_id);
        self.send_request(&req, opts.server_id).await?;
        let (local, _) = self.local.broadcast_with_ack(packet, opts, timeout);
        let deadline = self
            .shared
            .config
            .request_timeout
            .saturating_add(timeout.unwrap_or(self.local.ack_timeout()));
        Ok(Either::Right(AckStream::new(
            local,
            remote,
            decode_ack,
            deadline,
            remote_servers,
            req_id,
            self.responses.clone(),
        )))
    }

    async fn disconnect_socket(&self, opts: BroadcastOptions) -> Result<(), BroadcastError> {
        if !opts.is_local(self.uid) {
            let req = RequestOut::new(self.uid, RequestTypeOut::DisconnectSockets, &opts);
            self.send_request(&req, opts.server_id)
                .await
                .map_err(AdapterError::from)?;
        }
        self.local
            .disconnect_socket(opts)
            .map_err(BroadcastError::Socket)
    }

    async fn rooms(&self, opts: BroadcastOptions) -> Result<Vec<Room>, Self::Error> {
        if opts.is_local(self.uid) {
            return Ok(self.local.rooms(opts).into_iter().collect());
        }
        let req = RequestOut::new(self.uid, RequestTypeOut::AllRooms, &opts);
        // Listen before asking: an answer may come before the publish returns.
        let answers = self
            .responses_to::<()>(req.id, ResponseTypeId::AllRooms, opts.server_id)
            .await?;
        self.send_request(&req, opts.server_id).await?;
        let local = self.local.rooms(opts);
        let rooms = answers
            .filter_map(|r| future::ready(r.into_rooms()))
            .fold(local, async |mut all, rooms| {
                all.extend(rooms);
                all
            })
            .await;
        Ok(rooms.into_iter().collect())
    }

    /// Joins, and returns once this server is subscribed to the rooms: a
    /// broadcast sent after this returns reaches the joined sockets.
    async fn add_sockets(
        &self,
        opts: BroadcastOptions,
        rooms: impl RoomParam,
    ) -> Result<(), Self::Error> {
        let rooms: Vec<Room> = rooms.into_room_iter().collect();
        if !opts.is_local(self.uid) {
            let req = RequestOut::new(self.uid, RequestTypeOut::AddSockets(&rooms), &opts);
            self.send_request(&req, opts.server_id).await?;
        }
        self.local.add_sockets(opts, rooms.clone());
        self.interest.sync_and_wait(rooms).await?;
        Ok(())
    }

    async fn del_sockets(
        &self,
        opts: BroadcastOptions,
        rooms: impl RoomParam,
    ) -> Result<(), Self::Error> {
        let rooms: Vec<Room> = rooms.into_room_iter().collect();
        if !opts.is_local(self.uid) {
            let req = RequestOut::new(self.uid, RequestTypeOut::DelSockets(&rooms), &opts);
            self.send_request(&req, opts.server_id).await?;
        }
        self.local.del_sockets(opts, rooms.clone());
        self.interest.sync(rooms);
        Ok(())
    }

    async fn fetch_sockets(
        &self,
        opts: BroadcastOptions,
    ) -> Result<Vec<RemoteSocketData>, Self::Error> {
        if opts.is_local(self.uid) {
            return Ok(self.local.fetch_sockets(opts));
        }
        let req = RequestOut::new(self.uid, RequestTypeOut::FetchSockets, &opts);
        let answers = self
            .responses_to::<RemoteSocketData>(req.id, ResponseTypeId::FetchSockets, opts.server_id)
            .await?;
        self.send_request(&req, opts.server_id).await?;
        let local = self.local.fetch_sockets(opts);
        Ok(answers
            .filter_map(|r| future::ready(r.into_fetch_sockets()))
            .fold(local, async |mut all, sockets| {
                all.extend(sockets);
                all
            })
            .await)
    }

    fn get_local(&self) -> &CoreLocalAdapter<E> {
        &self.local
    }
}

impl<E: SocketEmitter> ShardedAdapter<E> {
    fn route(&self, opts: &BroadcastOptions) -> Route {
        if opts.is_local(self.uid) {
            return Route::Local;
        }
        match opts.server_id {
            Some(server) if server == self.uid => Route::Local,
            Some(server) => Route::Node(server),
            None if opts.rooms.is_empty()
                || opts.rooms.len() > self.shared.config.max_rooms_per_split =>
            {
                Route::All
            }
            None => Route::Rooms,
        }
    }

    /// The frames of a broadcast, with the channel of each. The packet is
    /// encoded once; only the options differ between copies.
    fn broadcast_frames(
        &self,
        packet: &Packet,
        opts: &BroadcastOptions,
        route: Route,
    ) -> Result<Vec<(String, Vec<u8>)>, Error> {
        let packet = rmp_serde::to_vec(packet)?;
        let frame = |opts: &BroadcastOptions| -> Result<Vec<u8>, Error> {
            let mut buf = wire::header(Kind::Broadcast, self.uid, packet.len() + 64);
            rmp_serde::encode::write(&mut buf, opts)?;
            buf.extend_from_slice(&packet);
            Ok(buf)
        };
        Ok(match route {
            Route::Local => Vec::new(),
            Route::Node(server) => vec![(self.channels.node(server), frame(opts)?)],
            Route::All => vec![(self.channels.all(), frame(opts)?)],
            Route::Rooms => {
                let mut rooms: Vec<&Room> = Vec::with_capacity(opts.rooms.len());
                for room in &opts.rooms {
                    if !rooms.contains(&room) {
                        rooms.push(room);
                    }
                }
                let mut copy = opts.clone();
                let mut frames = Vec::with_capacity(rooms.len());
                for (i, room) in rooms.iter().enumerate() {
                    copy.rooms.clear();
                    copy.rooms.push((*room).clone());
                    if i > 0 {
                        copy.except.push(rooms[i - 1].clone());
                    }
                    frames.push((self.channels.room(room), frame(&copy)?));
                }
                frames
            }
        })
    }

    async fn publish_all(&self, mut frames: Vec<(String, Vec<u8>)>) -> Result<(), Error> {
        let (client, options, stats) = (
            &self.shared.client,
            &self.publish_options,
            &*self.shared.stats,
        );
        if frames.len() <= 1 {
            // The common case, a broadcast to one room, without a join.
            return match frames.pop() {
                Some((channel, frame)) => publish(client, options, stats, channel, frame).await,
                None => Ok(()),
            };
        }
        join_all(
            frames
                .into_iter()
                .map(|(channel, frame)| publish(client, options, stats, channel, frame)),
        )
        .await
        .into_iter()
        .collect()
    }

    async fn send_request(&self, req: &RequestOut<'_>, target: Option<Uid>) -> Result<(), Error> {
        let body = rmp_serde::to_vec(req)?;
        let mut frame = wire::header(Kind::Request, self.uid, body.len());
        frame.extend_from_slice(&body);
        let channel = match target {
            Some(server) => self.channels.node(server),
            None => self.channels.all(),
        };
        publish(
            &self.shared.client,
            &self.publish_options,
            &self.shared.stats,
            channel,
            frame,
        )
        .await
    }

    /// The answers to request `req_id` of type `kind`: one per other server
    /// (or from `target` only), until the request timeout.
    async fn responses_to<D: DeserializeOwned + fmt::Debug>(
        &self,
        req_id: Sid,
        kind: ResponseTypeId,
        target: Option<Uid>,
    ) -> Result<impl Stream<Item = Response<D>> + use<D, E>, Error> {
        let servers = match target {
            Some(_) => 1,
            None => usize::from(self.server_count().await?.saturating_sub(1)),
        };
        let rx = insert_response_handler(&self.responses, req_id, servers);
        let answers = ChanStream::new(rx).filter_map(|item: Bytes| {
            future::ready(match rmp_serde::from_slice::<(Sid, Response<D>)>(&item) {
                Ok((_, response)) => Some(response),
                Err(e) => {
                    tracing::warn!(error = %e, "undecodable response from another server");
                    None
                }
            })
        });
        Ok(wait_responses(
            answers,
            self.responses.clone(),
            req_id,
            kind,
            servers,
            self.shared.config.request_timeout,
        ))
    }

    /// A message from another server (or this one: dropped unread).
    fn receive(self: &Arc<Self>, frame: &[u8]) {
        let stats = &self.shared.stats;
        let Some(frame) = wire::parse(frame) else {
            stats.malformed();
            return;
        };
        if frame.is_from(self.uid) {
            stats.loopback();
            return;
        }
        match frame.kind {
            Kind::Broadcast => {
                let mut body = frame.body;
                let decoded = rmp_serde::from_read::<_, BroadcastOptions>(&mut body)
                    .and_then(|opts| Ok((opts, rmp_serde::from_read::<_, Packet>(&mut body)?)));
                match decoded {
                    Ok((opts, packet)) => self.recv_broadcast(opts, packet),
                    Err(e) => {
                        stats.malformed();
                        tracing::debug!(error = %e, "undecodable broadcast");
                    }
                }
            }
            Kind::Request => match rmp_serde::from_slice::<RequestIn>(frame.body) {
                Ok(req) => self.recv_req(req),
                Err(e) => {
                    stats.malformed();
                    tracing::debug!(error = %e, "undecodable request");
                }
            },
            Kind::Response => {
                let Some(req_id) = wire::response_id(frame.body) else {
                    stats.malformed();
                    return;
                };
                let handlers = self.responses.lock().unwrap_or_else(|p| p.into_inner());
                match handlers.get(&req_id) {
                    Some(tx) => {
                        if let Err(e) = tx.try_send(Bytes::copy_from_slice(frame.body)) {
                            tracing::warn!(error = %e, "response dropped: its reader is behind");
                        }
                    }
                    // The request timed out or got all its answers already.
                    None => tracing::debug!(%req_id, "response to a finished request"),
                }
            }
        }
    }
}

/// Publishes one frame; counts it when Redis took it.
async fn publish(
    client: &SubscriberClient,
    options: &Options,
    stats: &Stats,
    channel: String,
    frame: Vec<u8>,
) -> Result<(), Error> {
    client
        .with_options(options)
        .spublish::<i64, _, _>(channel, frame)
        .await?;
    stats.published(1);
    Ok(())
}

fn decode_ack<E: DeserializeOwned + fmt::Debug>(
    item: Bytes,
) -> Result<Response<E>, Box<dyn std::error::Error + Send>> {
    rmp_serde::from_slice::<(Sid, Response<E>)>(&item)
        .map(|(_, response)| response)
        .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send>)
}

impl<E: SocketEmitter> RemoteRequestHandler<E> for ShardedAdapter<E> {
    type Error = Error;

    fn local(&self) -> &CoreLocalAdapter<E> {
        &self.local
    }

    fn send_res<D: Serialize + fmt::Debug + Send + 'static>(
        &self,
        req_id: Sid,
        req_origin: Uid,
        res: Response<D>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let frame = rmp_serde::to_vec(&(req_id, res)).map(|body| {
            let mut frame = wire::header(Kind::Response, self.uid, body.len());
            frame.extend_from_slice(&body);
            frame
        });
        let channel = self.channels.node(req_origin);
        let client = self.shared.client.clone();
        let options = self.publish_options.clone();
        let stats = self.shared.stats.clone();
        async move { publish(&client, &options, &stats, channel, frame?).await }
    }

    fn recv_add_sockets(&self, opts: BroadcastOptions, rooms: Vec<Room>) {
        self.local.add_sockets(opts, rooms.clone());
        self.interest.sync(rooms);
    }

    fn recv_del_sockets(&self, opts: BroadcastOptions, rooms: Vec<Room>) {
        self.local.del_sockets(opts, rooms.clone());
        self.interest.sync(rooms);
    }
}

impl<E: SocketEmitter> LocalRooms for ShardedAdapter<E> {
    fn has_members(&self, room: &Room) -> bool {
        let mut opts = BroadcastOptions::default();
        opts.rooms.push(room.clone());
        !self.local.sockets(opts).is_empty()
    }
}

/// The dispatcher's handle on a namespace; it must not keep the namespace alive.
struct NamespaceInbox<E>(Weak<ShardedAdapter<E>>);

impl<E: SocketEmitter> Inbox for NamespaceInbox<E> {
    fn receive(&self, frame: &[u8]) {
        if let Some(adapter) = self.0.upgrade() {
            adapter.receive(frame);
        }
    }

    fn resubscribe(&self) {
        if let Some(adapter) = self.0.upgrade() {
            adapter.interest.resubscribe();
        }
    }
}

/// The adapter's initialisation: subscribes the namespace's channels.
/// socketioxide awaits it for namespaces declared with `io.ns(..)`.
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct InitRes(BoxFuture<'static, Result<(), InitError>>);

impl Future for InitRes {
    type Output = Result<(), InitError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

impl Spawnable for InitRes {
    fn spawn(self) {
        tokio::spawn(async move {
            if let Err(e) = self.0.await {
                tracing::error!(error = %e, "initialising the sharded adapter failed");
            }
        });
    }
}
