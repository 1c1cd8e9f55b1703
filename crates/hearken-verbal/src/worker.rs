//! The recogniser thread: owns one [`VerbalModel`] and decodes utterances
//! handed to it through a bounded queue, so decoding never runs on the
//! thread that feeds the listener.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{DecodeError, LoadError, SubmitError};
use crate::listener::Utterance;
use crate::model::{Answer, ModelFiles, VerbalModel};

/// One utterance to recognise, with the caller's tag (for example the
/// participant it belongs to).
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// The caller's tag, handed back with the result.
    pub tag: u64,
    /// The utterance.
    pub utterance: Utterance,
}

/// The result of one [`Job`].
#[derive(Debug, Clone, PartialEq)]
pub struct Recognised {
    /// The job's tag.
    pub tag: u64,
    /// The answer, `None` when the utterance was not an answer.
    pub result: Result<Option<Answer>, DecodeError>,
    /// How long decoding took (the thread's CPU work for this job).
    pub decode_time: Duration,
}

/// A thread that owns a loaded model. Dropping it lets the thread finish the
/// jobs already queued, then joins it.
#[derive(Debug)]
pub struct Recogniser {
    jobs: Option<SyncSender<Job>>,
    thread: Option<JoinHandle<()>>,
    language: &'static str,
}

impl Recogniser {
    /// Starts the thread and loads the model on it; returns once the model is
    /// loaded (or failed to). `queue` bounds the jobs waiting;
    /// `on_result` runs on the recogniser thread for each finished job, so it
    /// should only hand the result on (a channel, a waker).
    pub fn spawn<F>(files: ModelFiles, queue: usize, mut on_result: F) -> Result<Self, LoadError>
    where
        F: FnMut(Recognised) + Send + 'static,
    {
        let language = files.language();
        let (jobs, job_rx): (SyncSender<Job>, Receiver<Job>) = sync_channel(queue);
        let (loaded_tx, loaded_rx) = sync_channel::<Result<(), LoadError>>(1);
        let thread = std::thread::Builder::new()
            .name(format!("verbal-{language}"))
            .spawn(move || {
                let mut model = match VerbalModel::load_files(&files) {
                    Ok(model) => {
                        // The spawner waits for this message; if it is gone, so is the work.
                        if loaded_tx.send(Ok(())).is_err() {
                            return;
                        }
                        model
                    }
                    Err(e) => {
                        let _ = loaded_tx.send(Err(e));
                        return;
                    }
                };
                for job in job_rx {
                    let started = Instant::now();
                    let result = model.recognise(&job.utterance);
                    on_result(Recognised {
                        tag: job.tag,
                        result,
                        decode_time: started.elapsed(),
                    });
                }
            })
            .map_err(LoadError::Thread)?;
        match loaded_rx.recv() {
            Ok(Ok(())) => Ok(Self {
                jobs: Some(jobs),
                thread: Some(thread),
                language,
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            // The thread died while loading (a panic inside pocketsphinx's wrapper).
            Err(_) => {
                let _ = thread.join();
                Err(LoadError::Decoder {
                    step: "load the acoustic model",
                })
            }
        }
    }

    /// Queues a job without waiting: a full queue or a stopped thread hands
    /// the job back in the error.
    pub fn try_submit(&self, job: Job) -> Result<(), SubmitError> {
        let Some(jobs) = &self.jobs else {
            return Err(SubmitError::Stopped(Box::new(job)));
        };
        jobs.try_send(job).map_err(|e| match e {
            TrySendError::Full(job) => SubmitError::Full(Box::new(job)),
            TrySendError::Disconnected(job) => SubmitError::Stopped(Box::new(job)),
        })
    }

    /// The language of the loaded model.
    pub fn language(&self) -> &'static str {
        self.language
    }
}

impl Drop for Recogniser {
    fn drop(&mut self) {
        // Closing the queue ends the thread's loop after the queued jobs.
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
