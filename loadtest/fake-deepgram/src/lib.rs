//! Fake Deepgram live server (work in progress).
