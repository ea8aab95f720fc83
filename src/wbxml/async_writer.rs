//! Thin adapter from the sans-io [`Writer`] to a `tokio::io::AsyncWrite` sink.

use std::io;

use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::writer::Writer;
use super::WriteError;

fn to_io(e: WriteError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e)
}

/// Streams a WBXML document to an async sink. Build the document through
/// [`AsyncWriter::writer`] and call [`AsyncWriter::flush_if_over`] between
/// items; large opaque values go straight to the sink with
/// [`AsyncWriter::opaque_chunk`] without passing through the buffer.
///
/// ```
/// # async fn demo() -> std::io::Result<()> {
/// use eas_gateway::wbxml::{async_writer::AsyncWriter, tags::{airsync, airsyncbase}};
/// let mut out = Vec::new();
/// let mut w = AsyncWriter::new(&mut out);
/// w.writer().start(airsync::SYNC).map_err(std::io::Error::other)?;
/// w.writer().start(airsyncbase::DATA).map_err(std::io::Error::other)?;
/// w.writer().begin_opaque(4).map_err(std::io::Error::other)?;
/// w.opaque_chunk(b"ab").await?;
/// w.opaque_chunk(b"cd").await?;
/// w.writer().end().map_err(std::io::Error::other)?;
/// w.writer().end().map_err(std::io::Error::other)?;
/// w.finish().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct AsyncWriter<W> {
    writer: Writer,
    sink: W,
    threshold: usize,
}

impl<W: AsyncWrite + Unpin> AsyncWriter<W> {
    /// A writer whose buffer is flushed once it holds 64 KiB.
    pub fn new(sink: W) -> AsyncWriter<W> {
        AsyncWriter::with_threshold(sink, 64 * 1024)
    }

    /// A writer with a custom flush threshold for [`AsyncWriter::flush_if_over`].
    pub fn with_threshold(sink: W, threshold: usize) -> AsyncWriter<W> {
        AsyncWriter {
            writer: Writer::new(),
            sink,
            threshold,
        }
    }

    /// The underlying sans-io writer.
    pub fn writer(&mut self) -> &mut Writer {
        &mut self.writer
    }

    /// Writes the buffered bytes to the sink.
    pub async fn flush_buffer(&mut self) -> io::Result<()> {
        let bytes = self.writer.take();
        if !bytes.is_empty() {
            self.sink.write_all(&bytes).await?;
        }
        Ok(())
    }

    /// Writes the buffered bytes to the sink if they exceed the threshold.
    pub async fn flush_if_over(&mut self) -> io::Result<()> {
        if self.writer.buffered().len() >= self.threshold {
            self.flush_buffer().await?;
        }
        Ok(())
    }

    /// Writes a chunk of the opaque value opened with
    /// [`Writer::begin_opaque`] directly to the sink (after the buffer).
    pub async fn opaque_chunk(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.writer
            .opaque_external(chunk.len() as u64)
            .map_err(to_io)?;
        self.flush_buffer().await?;
        self.sink.write_all(chunk).await
    }

    /// Checks the document is complete, writes the rest, flushes the sink
    /// and returns it.
    pub async fn finish(self) -> io::Result<W> {
        let AsyncWriter {
            writer, mut sink, ..
        } = self;
        let rest = writer.finish().map_err(to_io)?;
        sink.write_all(&rest).await?;
        sink.flush().await?;
        Ok(sink)
    }
}
