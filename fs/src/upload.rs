//! The memory budget of uploads in flight.
//!
//! An upload's body is read into one [`crate::needle::NeedleBuf`] (the needle is built in
//! place and handed to the volume without a second copy), so the memory spent on uploads is
//! the sum of their buffers. [`UploadBudget`] bounds that sum with a semaphore of bytes: an
//! upload with a `Content-Length` takes its whole share before the first body byte is read;
//! one without grows its share with its buffer. A share not available within the configured
//! wait is [`BudgetError::Busy`] (the HTTP layer answers `503` with `Retry-After`); a share
//! larger than the whole budget is [`BudgetError::TooLarge`]. Shares are returned when the
//! [`Share`] is dropped, i.e. when the write finished or failed.

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why an upload got no memory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    /// Other uploads held the memory for the whole wait.
    #[error(
        "server busy: the upload memory ({total} bytes) stayed in use by other uploads for \
         {waited_ms} ms; retry later"
    )]
    Busy {
        /// The budget in bytes.
        total: usize,
        /// How long the upload waited.
        waited_ms: u64,
    },
    /// The upload needs more than the whole budget.
    #[error("upload needs {need} bytes of memory; the server's upload memory is {total} bytes")]
    TooLarge {
        /// Bytes asked for.
        need: usize,
        /// The budget in bytes.
        total: usize,
    },
}

/// A byte budget shared by all uploads.
#[derive(Debug, Clone)]
pub struct UploadBudget {
    sem: Arc<Semaphore>,
    total: usize,
    wait: Duration,
}

/// The part of the budget one upload holds (returned on drop).
#[derive(Debug, Default)]
pub struct Share {
    permit: Option<OwnedSemaphorePermit>,
    bytes: usize,
}

impl Share {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl UploadBudget {
    /// A budget of `total` bytes; an upload waits at most `wait` for its share.
    pub fn new(total: usize, wait: Duration) -> Self {
        let total = total.min(Semaphore::MAX_PERMITS);
        UploadBudget {
            sem: Arc::new(Semaphore::new(total)),
            total,
            wait,
        }
    }

    /// The budget in bytes.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Bytes held by uploads now.
    pub fn in_use(&self) -> usize {
        self.total.saturating_sub(self.sem.available_permits())
    }

    /// Grows `share` to at least `bytes`, waiting up to the configured time.
    pub async fn grow(&self, share: &mut Share, bytes: usize) -> Result<(), BudgetError> {
        if bytes <= share.bytes {
            return Ok(());
        }
        let too_large = BudgetError::TooLarge {
            need: bytes,
            total: self.total,
        };
        if bytes > self.total {
            return Err(too_large);
        }
        let more = u32::try_from(bytes - share.bytes).map_err(|_| too_large)?;
        let started = std::time::Instant::now();
        let permit = match tokio::time::timeout(
            self.wait,
            self.sem.clone().acquire_many_owned(more),
        )
        .await
        {
            Ok(Ok(p)) => p,
            // The semaphore is never closed; treat it like a timeout if it were.
            Ok(Err(_)) | Err(_) => {
                return Err(BudgetError::Busy {
                    total: self.total,
                    waited_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                })
            }
        };
        match &mut share.permit {
            Some(p) => p.merge(permit),
            None => share.permit = Some(permit),
        }
        share.bytes = bytes;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shares_are_bounded_returned_and_waited_for() {
        let b = UploadBudget::new(1000, Duration::from_millis(50));
        let mut a = Share::default();
        b.grow(&mut a, 600).await.unwrap();
        b.grow(&mut a, 700).await.unwrap();
        assert_eq!((a.bytes(), b.in_use()), (700, 700));
        let mut c = Share::default();
        assert!(matches!(
            b.grow(&mut c, 400).await,
            Err(BudgetError::Busy { total: 1000, .. })
        ));
        assert_eq!(b.in_use(), 700, "a refused share holds nothing");
        assert_eq!(
            b.grow(&mut c, 1001).await,
            Err(BudgetError::TooLarge {
                need: 1001,
                total: 1000
            })
        );
        // A waiter gets its share as soon as it is returned.
        let b2 = b.clone();
        let waiter = tokio::spawn(async move {
            let mut s = Share::default();
            let r = b2.grow(&mut s, 900).await;
            (r, s.bytes())
        });
        tokio::task::yield_now().await;
        drop(a);
        let (r, got) = waiter.await.unwrap();
        assert_eq!((r, got), (Ok(()), 900));
        assert_eq!(b.in_use(), 0, "shares returned on drop");
    }
}
