//! Group commit for sends. Each send request becomes one job; a worker takes every job
//! waiting at that moment and inserts them all in one statement, so that under load one commit
//! carries many requests instead of one commit per request (PostgreSQL commits a few thousand
//! single-row transactions per second here but inserts tens of thousands of rows per second in
//! multi-row statements). A request is answered only once the statement carrying it has
//! committed; if a shared statement fails, each job is retried alone, so one bad request never
//! fails another.

use std::ops::Range;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Mutex};

use super::messages::Message;
use super::{PgPool, Result, StoreError};

/// Rows in one statement: 18 bound columns each, under PostgreSQL's 65 535 binds.
pub const MAX_STATEMENT_ROWS: usize = 3_000;
/// Jobs waiting before senders wait too.
const QUEUE: usize = 4_096;

struct Job {
    rows: Vec<Message>,
    reply: oneshot::Sender<Result<()>>,
}

/// The handle send handlers commit through.
#[derive(Clone)]
pub struct Committer {
    tx: mpsc::Sender<Job>,
}

impl Committer {
    /// Starts `workers` commit tasks on the current tokio runtime.
    pub fn start(pool: PgPool, workers: usize) -> Committer {
        let (tx, rx) = mpsc::channel(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..workers.max(1) {
            tokio::spawn(worker(pool.clone(), rx.clone()));
        }
        Committer { tx }
    }

    /// Inserts the messages of one request (at most [`MAX_STATEMENT_ROWS`]); returns once they
    /// are committed.
    pub async fn insert(&self, rows: Vec<Message>) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Job { rows, reply })
            .await
            .map_err(|_| StoreError::Pool("group commit stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Pool("group commit dropped a job".into()))?
    }
}

async fn worker(pool: PgPool, rx: Arc<Mutex<mpsc::Receiver<Job>>>) {
    loop {
        let mut jobs = Vec::new();
        {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else { return };
            let mut rows = first.rows.len();
            jobs.push(first);
            while rows < MAX_STATEMENT_ROWS {
                match rx.try_recv() {
                    Ok(job) if rows + job.rows.len() <= MAX_STATEMENT_ROWS => {
                        rows += job.rows.len();
                        jobs.push(job);
                    }
                    Ok(job) => {
                        // Too big to join this statement: it gets its own, right after.
                        commit(&pool, vec![job]).await;
                        break;
                    }
                    Err(_) => break,
                }
            }
        }
        commit(&pool, jobs).await;
    }
}

async fn commit(pool: &PgPool, jobs: Vec<Job>) {
    let mut all = Vec::with_capacity(jobs.iter().map(|j| j.rows.len()).sum());
    let mut parts: Vec<(Range<usize>, oneshot::Sender<Result<()>>)> = Vec::new();
    for job in jobs {
        let start = all.len();
        all.extend(job.rows);
        parts.push((start..all.len(), job.reply));
    }
    let mut conn = match super::conn(pool).await {
        Ok(c) => c,
        Err(e) => {
            let msg = e.to_string();
            for (_, reply) in parts {
                let _ = reply.send(Err(StoreError::Pool(msg.clone())));
            }
            return;
        }
    };
    match Message::insert_all(&mut conn, &all).await {
        Ok(()) => {
            for (_, reply) in parts {
                let _ = reply.send(Ok(()));
            }
        }
        Err(e) if parts.len() == 1 => {
            if let Some((_, reply)) = parts.pop() {
                let _ = reply.send(Err(e));
            }
        }
        // One bad job must not fail the others: each goes again on its own.
        Err(_) => {
            for (range, reply) in parts {
                let _ = reply.send(Message::insert_all(&mut conn, &all[range]).await);
            }
        }
    }
}
