//! Where verified bytes go: the [`Sink`] the download verifier writes into, and the local one, an
//! owner-only `.part` file ([`PartFile`], renamed to its final name once verified). The object-storage
//! sink (a multipart upload) is in [`super::upload`].

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::private_fs::{create_private_file, open_private};

const WRITE_BUFFER: usize = 256 * 1024;

/// Where a file is written until it is verified: `<final path>.part`.
pub fn part_path(final_path: &Path) -> PathBuf {
    let mut s = final_path.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

/// Where verified bytes go. A `.part` file on the local disk today ([`PartFile`]); another store (an
/// object-storage multipart upload) implements the same two calls. Bytes arrive in order and only
/// after the verifier has counted, hashed and checked them; a file is kept under its final name only
/// once `download::verify::verify_stream` and the checks after it (lengths, manifest count) have passed.
pub trait Sink {
    /// Takes the next verified bytes.
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Makes everything written durable; called once, after the last byte.
    fn finish(&mut self) -> io::Result<()>;
}

/// The local sink: an owner-only `.part` file behind a write buffer.
pub struct PartFile(BufWriter<File>);

impl PartFile {
    /// Creates (or empties) the `.part`, mode 0600.
    pub fn create(path: &Path) -> io::Result<Self> {
        Ok(PartFile(BufWriter::with_capacity(WRITE_BUFFER, create_private_file(path)?)))
    }

    /// Opens an existing `.part` to write after its end.
    pub fn append(path: &Path) -> io::Result<Self> {
        let f = open_private(path, File::options().append(true))?;
        Ok(PartFile(BufWriter::with_capacity(WRITE_BUFFER, f)))
    }
}

impl Sink for PartFile {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.0.write_all(bytes)
    }

    fn finish(&mut self) -> io::Result<()> {
        self.0.flush()?;
        self.0.get_ref().sync_data()
    }
}
