//! Byte-level tests of the verifier: no network, the sink a `Vec` or a `.part` in a temporary folder.

use std::fs::File;
use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;

use super::*;
use crate::download::classify::{BodyEnd, BodyVerdict, judge_body};

const TWO: &[u8] = b"{\"resourceType\":\"Patient\",\"id\":\"1\"}\n{\"resourceType\":\"Patient\",\"id\":\"2\"}\n";
const TWO_SHA256: &str = "7f1637374955905f3808366ac414811b251c8d8d6b83b82a18d9d853fe9110d3";
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

impl Sink for Vec<u8> {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.extend_from_slice(bytes);
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Refuses every write, as a full disk would.
struct FullDisk;

impl Sink for FullDisk {
    fn write_all(&mut self, _: &[u8]) -> io::Result<()> {
        Err(io::Error::new(io::ErrorKind::StorageFull, "no space left on device"))
    }

    fn finish(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn settings(validate: Validate) -> DownloadSettings {
    DownloadSettings {
        dir: crate::store::Location::Local("out".into()),
        concurrency: 4,
        validate,
        retries: 3,
        delete_on_success: false,
        max_line_bytes: 1024,
        max_file_bytes: 1 << 30,
        accept_count_mismatch: false,
    }
}

/// `body` in chunks of `size` bytes.
fn chunks(body: &[u8], size: usize) -> Vec<&[u8]> {
    body.chunks(size).collect()
}

/// Verifies `body` (plain) with `s`, into a `Vec`; returns the outcome and what the sink received.
fn run(s: &DownloadSettings, body: &[u8], size: usize) -> (Result<Verified, VerifyError>, Vec<u8>) {
    let mut sink = Vec::new();
    let res = verify_stream(s, "Patient", false, None::<&[u8]>, chunks(body, size), &mut sink);
    (res, sink)
}

fn gzip(body: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(body).unwrap();
    e.finish().unwrap()
}

fn patients(n: usize) -> Vec<u8> {
    (0..n).flat_map(|i| format!("{{\"resourceType\":\"Patient\",\"id\":\"p{i}\"}}\n").into_bytes()).collect()
}

#[test]
fn plain_bytes_are_counted_hashed_and_written_whatever_the_chunking() {
    for size in [1, 7, 36, 37, TWO.len()] {
        let (res, sink) = run(&settings(Validate::Strict), TWO, size);
        let v = res.unwrap();
        assert_eq!(
            v,
            Verified {
                bytes: TWO.len() as u64,
                sha256: TWO_SHA256.into(),
                tally: Tally { lines: 2, ..Tally::default() }
            },
            "chunks of {size}"
        );
        assert_eq!(sink, TWO);
    }
}

#[test]
fn an_empty_body_is_an_empty_file() {
    let (res, sink) = run(&settings(Validate::Strict), b"", 1);
    assert_eq!(res.unwrap(), Verified { bytes: 0, sha256: EMPTY_SHA256.into(), tally: Tally::default() });
    assert!(sink.is_empty());
}

#[test]
fn gzip_is_decoded_before_the_checks_and_the_sink() {
    let body = patients(500);
    let (plain, _) = run(&settings(Validate::Strict), &body, 4096);
    let plain = plain.unwrap();
    assert_eq!(plain.tally.lines, 500);
    let gz = gzip(&body);
    for size in [1, 100, gz.len()] {
        let mut sink = Vec::new();
        let v =
            verify_stream(&settings(Validate::Strict), "Patient", true, None::<&[u8]>, chunks(&gz, size), &mut sink)
                .unwrap();
        assert_eq!(v, plain, "chunks of {size}");
        assert_eq!(sink, body);
    }
}

#[test]
fn a_multi_member_gzip_is_one_file() {
    let mut gz = gzip(&TWO[..36]);
    gz.extend(gzip(&TWO[36..]));
    let mut sink = Vec::new();
    let v =
        verify_stream(&settings(Validate::Strict), "Patient", true, None::<&[u8]>, chunks(&gz, 10), &mut sink).unwrap();
    assert_eq!(
        v,
        Verified { bytes: TWO.len() as u64, sha256: TWO_SHA256.into(), tally: Tally { lines: 2, ..Tally::default() } }
    );
    assert_eq!(sink, TWO);
}

#[test]
fn a_truncated_or_corrupt_gzip_is_a_gzip_error() {
    let gz = gzip(&patients(200));
    let cut_in_trailer = &gz[..gz.len() - 4];
    let cut_in_data = &gz[..gz.len() / 2];
    let cut_in_header = &gz[..5];
    let mut flipped = gz.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0xff;
    let not_gzip: &[u8] = TWO;
    for (what, body) in [
        ("trailer", cut_in_trailer),
        ("data", cut_in_data),
        ("header", cut_in_header),
        ("flipped", &flipped[..]),
        ("plain", not_gzip),
    ] {
        let mut sink = Vec::new();
        let res =
            verify_stream(&settings(Validate::Strict), "Patient", true, None::<&[u8]>, chunks(body, 64), &mut sink);
        assert!(matches!(res, Err(VerifyError::Gzip(_))), "{what}: {res:?}");
    }
}

#[test]
fn a_resumed_part_is_replayed_so_counts_and_hash_cover_all_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let part = dir.path().join("Patient.ndjson.part");
    let mut body = patients(300);
    body.extend_from_slice(b"not json\n{\"resourceType\":\"Claim\"}\n");
    body.extend(patients(10));
    let s = settings(Validate::Report);
    let (whole, _) = run(&s, &body, 1000);
    let whole = whole.unwrap();
    assert_eq!((whole.tally.lines, whole.tally.invalid, whole.tally.wrong_type), (312, 1, 1));

    // Cut mid-line, after the bad lines, as a dropped connection would.
    let cut = body.len() - 123;
    let mut sink = PartFile::create(&part).unwrap();
    let first = verify_stream(&s, "Patient", false, None::<&[u8]>, chunks(&body[..cut], 1000), &mut sink).unwrap();
    drop(sink);
    assert_eq!(first.bytes, cut as u64);
    assert_eq!(std::fs::read(&part).unwrap(), &body[..cut]);

    let prior = File::open(&part).unwrap();
    let mut sink = PartFile::append(&part).unwrap();
    let resumed = verify_stream(&s, "Patient", false, Some(prior), chunks(&body[cut..], 7), &mut sink).unwrap();
    drop(sink);
    assert_eq!(resumed, whole);
    assert_eq!(std::fs::read(&part).unwrap(), body);
}

#[test]
fn the_size_cap_stops_at_the_limit() {
    let mut s = settings(Validate::Strict);
    s.max_file_bytes = TWO.len() as u64;
    let (res, sink) = run(&s, TWO, 10);
    assert_eq!(res.unwrap().bytes, TWO.len() as u64, "exactly the limit is allowed");
    assert_eq!(sink, TWO);

    s.max_file_bytes = TWO.len() as u64 - 1;
    let (res, sink) = run(&s, TWO, 10);
    assert!(matches!(res, Err(VerifyError::TooLarge { limit }) if limit == s.max_file_bytes), "{res:?}");
    assert_eq!(sink, &TWO[..70], "the chunk that would pass the limit is not written");
}

#[test]
fn a_gzip_bomb_stops_at_the_limit_not_as_a_gzip_error() {
    let mut s = settings(Validate::Off);
    s.max_file_bytes = 100_000;
    let bomb = gzip(&vec![b' '; 10_000_000]);
    assert!(bomb.len() < 20_000, "{}", bomb.len());
    let mut sink = Vec::new();
    let res = verify_stream(&s, "Patient", true, None::<&[u8]>, chunks(&bomb, 4096), &mut sink);
    assert!(matches!(res, Err(VerifyError::TooLarge { limit: 100_000 })), "{res:?}");
    assert!(sink.len() <= 100_000, "{}", sink.len());
}

#[test]
fn a_replayed_part_counts_against_the_size_cap() {
    let mut s = settings(Validate::Strict);
    s.max_file_bytes = TWO.len() as u64;
    let mut sink = Vec::new();
    let res = verify_stream(&s, "Patient", false, Some(TWO), chunks(b"x", 1), &mut sink);
    assert!(matches!(res, Err(VerifyError::TooLarge { .. })), "{res:?}");
    assert!(sink.is_empty(), "the replay itself is not written");
}

#[test]
fn line_checks_count_and_name_each_problem() {
    let mut s = settings(Validate::Strict);
    s.max_line_bytes = 60;
    let long = format!("{{\"resourceType\":\"Patient\",\"text\":\"{}\"}}", "x".repeat(40));
    let body = format!(
        "{{\"resourceType\":\"Patient\"}}\n\
         \n   \r\n\
         {{\"resourceType\":\"Patient\"\n\
         {{\"resourceType\":\"Observation\"}}\r\n\
         [1,2]\n\
         {long}\n\
         {{\"id\":\"no type\"}}\n\
         {{\"resourceType\":\"Patient\",\"id\":\"last\"}}"
    );
    let (res, sink) = run(&s, body.as_bytes(), 13);
    let v = res.unwrap();
    assert_eq!(sink, body.as_bytes(), "bad lines are written too: they are the server's data");
    assert_eq!(
        v.tally,
        Tally {
            lines: 7,
            invalid: 4,
            wrong_type: 1,
            problems: vec![
                (4, "not JSON: unexpected end at column 26".into()),
                (5, "resourceType is \"Observation\", expected \"Patient\"".into()),
                (6, "not a JSON object".into()),
                (7, "line longer than the limit of 60 bytes".into()),
                (8, "no resourceType".into()),
            ],
            ..Tally::default()
        }
    );
}

#[test]
fn validate_off_counts_lines_but_still_refuses_oversized_ones() {
    let mut s = settings(Validate::Off);
    s.max_line_bytes = 10;
    let body = b"not json\n{\"resourceType\":\"Claim\"}\n\nlast";
    let (res, _) = run(&s, body, 5);
    assert_eq!(
        res.unwrap().tally,
        Tally {
            lines: 3,
            invalid: 1,
            wrong_type: 0,
            problems: vec![(2, "line longer than the limit of 10 bytes".into())],
            ..Tally::default()
        }
    );
}

#[test]
fn problems_are_capped_but_counts_are_exact() {
    let body = "{}\n".repeat(100);
    let (res, _) = run(&settings(Validate::Strict), body.as_bytes(), 64);
    let t = res.unwrap().tally;
    assert_eq!((t.lines, t.invalid, t.wrong_type), (100, 100, 0));
    assert_eq!(t.problems.len(), MAX_PROBLEMS_PER_FILE);
    assert_eq!(t.problems.last(), Some(&(MAX_PROBLEMS_PER_FILE as u64, "no resourceType".to_string())));
}

#[test]
fn a_count_mismatch_against_the_manifest_is_reported_not_accepted() {
    let (res, _) = run(&settings(Validate::Strict), TWO, 10);
    let v = res.unwrap();
    let end = |manifest_count| BodyEnd {
        gzip: false,
        net_error: None,
        received: TWO.len() as u64,
        content_length: Some(TWO.len() as u64),
        lines: v.tally.lines,
        header_lines: v.tally.headers,
        manifest_count,
        count_is_contract: true,
    };
    assert_eq!(judge_body(&end(Some(2))), BodyVerdict::Whole);
    assert_eq!(judge_body(&end(None)), BodyVerdict::Whole);
    assert_eq!(
        judge_body(&end(Some(3))),
        BodyVerdict::CountMismatch("2 resources in the file, the manifest said 3".into())
    );
}

/// Organized output (`organizeOutputBy=Patient`): two blocks, each opened by a `Parameters` header.
const BLOCKS: &[u8] = b"{\"resourceType\":\"Parameters\",\"parameter\":[{\"name\":\"header\",\"valueReference\":{\"reference\":\"Patient/1\"}}]}\n\
{\"resourceType\":\"Patient\",\"id\":\"1\"}\n\
{\"resourceType\":\"Condition\",\"id\":\"c1\",\"subject\":{\"reference\":\"Patient/1\"}}\n\
{\"resourceType\":\"Parameters\",\"parameter\":[{\"name\":\"header\",\"valueReference\":{\"reference\":\"Patient/2\"}}]}\n\
{\"resourceType\":\"Patient\",\"id\":\"2\"}\n\
{\"resourceType\":\"Condition\",\"id\":\"c2\"}\n\
{\"resourceType\":\"Observation\",\"id\":\"o2\"}\n";

fn mixed(s: &DownloadSettings, body: &[u8]) -> Tally {
    let mut sink = Vec::new();
    let v = verify_stream(s, crate::record::MIXED, false, None::<&[u8]>, chunks(body, 7), &mut sink).unwrap();
    assert_eq!(sink, body);
    v.tally
}

#[test]
fn organized_output_is_counted_by_type_from_the_content() {
    let t = mixed(&settings(Validate::Strict), BLOCKS);
    let types: Vec<(&str, u64)> = t.types.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(types, vec![("Condition", 2), ("Observation", 1), ("Parameters", 2), ("Patient", 2)]);
    assert_eq!((t.lines, t.headers, t.invalid, t.wrong_type, t.problems.len()), (7, 2, 0, 0, 0));
    // validate: off still counts by type (the counts come from the content).
    let off = mixed(&settings(Validate::Off), BLOCKS);
    assert_eq!((off.types, off.headers), (t.types, 2));
}

#[test]
fn organized_output_lines_must_still_be_resources() {
    let body = b"{\"resourceType\":\"Patient\"}\n{\"id\":\"x\"}\n[1]\n{\"resourceType\":\"../x\"}\n";
    let t = mixed(&settings(Validate::Strict), body);
    assert_eq!((t.lines, t.invalid, t.wrong_type), (4, 2, 1));
    assert_eq!(
        t.problems,
        vec![
            (2, "no resourceType".to_string()),
            (3, "not a JSON object".to_string()),
            (4, "resourceType is \"../x\", expected \"a resource type name\"".to_string()),
        ]
    );
    assert_eq!(t.types.keys().collect::<Vec<_>>(), vec!["Patient"]);
    let off = mixed(&settings(Validate::Off), body);
    assert_eq!((off.invalid, off.wrong_type), (0, 0));
}

#[test]
fn a_hostile_organized_file_cannot_grow_the_type_map() {
    let body: String = (0..MAX_TYPES_PER_FILE + 50).map(|i| format!("{{\"resourceType\":\"T{i}\"}}\n")).collect();
    let t = mixed(&settings(Validate::Strict), body.as_bytes());
    assert_eq!((t.lines, t.types.len()), (MAX_TYPES_PER_FILE as u64 + 50, MAX_TYPES_PER_FILE));
}

#[test]
fn a_failing_sink_is_an_io_error_even_behind_gzip() {
    for gz in [false, true] {
        let body = if gz { gzip(TWO) } else { TWO.to_vec() };
        let res =
            verify_stream(&settings(Validate::Strict), "Patient", gz, None::<&[u8]>, chunks(&body, 8), &mut FullDisk);
        match res {
            Err(VerifyError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::StorageFull, "gzip {gz}"),
            other => panic!("gzip {gz}: {other:?}"),
        }
    }
}

#[test]
fn a_part_file_is_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let part = dir.path().join("x.part");
    let mut sink = PartFile::create(&part).unwrap();
    sink.write_all(b"abc").unwrap();
    sink.finish().unwrap();
    assert_eq!(std::fs::metadata(&part).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read(&part).unwrap(), b"abc");
}
