//! Bounded all-to-all channels between shards.
//!
//! Every shard has one bounded inbox; every shard holds a sender to every
//! inbox. Messages are one-way, so a request that wants an answer carries a
//! [`ReplyHandle`] (a one-slot channel) inside its [`Envelope`].

use crate::ShardId;

/// A message could not be delivered: the receiving shard has stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} is not accepting messages (stopped)")]
pub struct SendError(pub ShardId);

/// The set of inboxes before they are handed to the shards.
pub struct Mesh<M> {
    endpoints: Vec<Option<MeshEndpoint<M>>>,
}

/// One shard's view of the mesh: its own inbox and a sender to every inbox.
pub struct MeshEndpoint<M> {
    shard: ShardId,
    senders: Vec<flume::Sender<M>>,
    inbox: flume::Receiver<M>,
}

impl<M: Send> Mesh<M> {
    /// Builds a mesh of `shard_count` inboxes, each holding at most
    /// `capacity` messages; senders wait (asynchronously) when it is full.
    pub fn new(shard_count: usize, capacity: usize) -> Self {
        assert!(shard_count > 0 && capacity > 0);
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..shard_count).map(|_| flume::bounded(capacity)).unzip();
        let endpoints = receivers
            .into_iter()
            .enumerate()
            .map(|(index, inbox)| {
                Some(MeshEndpoint {
                    shard: ShardId(index),
                    senders: senders.clone(),
                    inbox,
                })
            })
            .collect();
        Mesh { endpoints }
    }

    /// The endpoints, one per shard, to be `take()`n by each shard.
    pub fn into_endpoints(self) -> Vec<Option<MeshEndpoint<M>>> {
        self.endpoints
    }
}

impl<M: Send> MeshEndpoint<M> {
    /// The shard this endpoint belongs to.
    pub fn shard(&self) -> ShardId {
        self.shard
    }

    /// Number of shards in the mesh.
    pub fn shard_count(&self) -> usize {
        self.senders.len()
    }

    /// Sends `message` to `target`'s inbox, waiting while it is full.
    pub async fn send_to(&self, target: ShardId, message: M) -> Result<(), SendError> {
        assert!(target.0 < self.senders.len(), "no such shard {target}");
        self.senders[target.0]
            .send_async(message)
            .await
            .map_err(|_| SendError(target))
    }

    /// Receives the next message for this shard; `None` once every sender
    /// is gone.
    pub async fn recv(&self) -> Option<M> {
        self.inbox.recv_async().await.ok()
    }

    /// A sender to `target`'s inbox, for tasks that outlive a borrow.
    pub fn sender(&self, target: ShardId) -> flume::Sender<M> {
        self.senders[target.0].clone()
    }
}

/// A request and the handle its answer goes back through.
pub struct Envelope<Req, Resp> {
    /// The request itself.
    pub request: Req,
    /// Where the owner shard sends the answer.
    pub reply: ReplyHandle<Resp>,
}

/// The sending half of a one-answer channel.
pub struct ReplyHandle<Resp>(flume::Sender<Resp>);

/// The receiving half of a one-answer channel.
pub struct ReplyReceiver<Resp>(flume::Receiver<Resp>);

/// Wraps `request` with a fresh reply channel.
pub fn envelope<Req, Resp>(request: Req) -> (Envelope<Req, Resp>, ReplyReceiver<Resp>) {
    let (tx, rx) = flume::bounded(1);
    (
        Envelope {
            request,
            reply: ReplyHandle(tx),
        },
        ReplyReceiver(rx),
    )
}

impl<Resp> ReplyHandle<Resp> {
    /// Sends the answer. If the requester has gone away the answer is
    /// dropped: there is nobody left to tell.
    pub fn send(self, response: Resp) {
        let _ignored_requester_gone = self.0.try_send(response);
    }
}

impl<Resp> ReplyReceiver<Resp> {
    /// Waits for the answer; `None` if the owner dropped the request unanswered.
    pub async fn recv(self) -> Option<Resp> {
        self.0.recv_async().await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trip_and_drop() {
        let (env, rx) = envelope::<u32, u32>(7);
        env.reply.send(env.request * 2);
        assert_eq!(futures_lite_block(rx.recv()), Some(14));
        let (env, rx) = envelope::<u32, u32>(7);
        drop(env);
        assert_eq!(futures_lite_block(rx.recv()), None);
    }

    #[test]
    fn inbox_is_bounded() {
        let mesh = Mesh::<u8>::new(1, 2);
        let ep = mesh.into_endpoints().remove(0).unwrap();
        let tx = ep.sender(ShardId(0));
        assert!(tx.try_send(1).is_ok());
        assert!(tx.try_send(2).is_ok());
        assert!(tx.try_send(3).is_err());
    }

    fn futures_lite_block<F: std::future::Future>(f: F) -> F::Output {
        glommio::LocalExecutor::default().run(f)
    }
}
