//! [`Bars`]: the terminal display. Each job gets a group of lines (its header, then one line per file
//! in flight), drawn with indicatif as plain messages whose text [`super::render`] lays out for the
//! terminal's width. A job's reporter touches only its own group, and its `finish()` removes only its
//! own lines. A ticker thread redraws every few hundred milliseconds so elapsed times, spinners and
//! countdowns move between events.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::render::{Layout, job_lines};
use super::view::JobView;
use super::{Display, Event, Reporter};

const TICK: Duration = Duration::from_millis(200);

/// The bars on stderr right now, if any: log lines and messages are written above them.
static SHOWN: Mutex<Option<MultiProgress>> = Mutex::new(None);

/// Runs `f` (which writes to the terminal) with the bars on stderr, if any, out of its way.
pub fn above_bars<R>(f: impl FnOnce() -> R) -> R {
    let shown = SHOWN.lock().map(|s| s.clone()).unwrap_or(None);
    match shown {
        Some(m) => m.suspend(f),
        None => f(),
    }
}

type Columns = Box<dyn Fn() -> usize + Send + Sync>;
type Clock = Box<dyn Fn() -> Instant + Send + Sync>;

/// The terminal display of one command (every job in it).
pub struct Bars {
    inner: Arc<Inner>,
}

struct Inner {
    multi: MultiProgress,
    names: Vec<String>,
    columns: Columns,
    clock: Clock,
    color: bool,
    groups: Mutex<Vec<Arc<Mutex<Group>>>>,
    stopped: AtomicBool,
}

struct Group {
    view: JobView,
    bars: Vec<ProgressBar>,
    done: bool,
}

impl Bars {
    /// Bars on stderr for the jobs `names` (known up front, so labels line up).
    pub fn new(names: &[String], color: bool) -> Bars {
        let term = console::Term::stderr();
        let bars = Bars::with_target(
            ProgressDrawTarget::stderr_with_hz(10),
            names,
            Box::new(move || term.size().1 as usize),
            Box::new(Instant::now),
            color,
        );
        if let Ok(mut shown) = SHOWN.lock() {
            *shown = Some(bars.inner.multi.clone());
        }
        let weak = Arc::downgrade(&bars.inner);
        let _ = std::thread::Builder::new().name("progress".into()).spawn(move || ticker(weak));
        bars
    }

    /// Bars on any target, with the width and the clock given: tests draw on an in-memory terminal
    /// with a made-up clock and call [`Bars::tick`] themselves.
    pub fn with_target(
        target: ProgressDrawTarget,
        names: &[String],
        columns: Columns,
        clock: Clock,
        color: bool,
    ) -> Bars {
        let multi = MultiProgress::with_draw_target(target);
        Bars {
            inner: Arc::new(Inner {
                multi,
                names: names.to_vec(),
                columns,
                clock,
                color,
                groups: Mutex::new(Vec::new()),
                stopped: AtomicBool::new(false),
            }),
        }
    }

    /// Redraws every job's lines at the clock's instant.
    pub fn tick(&self) {
        self.inner.tick();
    }
}

fn ticker(inner: Weak<Inner>) {
    loop {
        std::thread::sleep(TICK);
        let Some(inner) = inner.upgrade() else { return };
        if inner.stopped.load(Ordering::Relaxed) {
            return;
        }
        inner.tick();
    }
}

impl Inner {
    fn layout(&self) -> Layout {
        Layout::new((self.columns)(), &self.names, self.color)
    }

    fn tick(&self) {
        let groups = self.groups.lock().expect("groups").clone();
        let (layout, now) = (self.layout(), (self.clock)());
        for g in groups {
            self.redraw(&mut g.lock().expect("group"), &layout, now);
        }
    }

    /// Sets a group's lines, adding or removing bars right after the group's own.
    fn redraw(&self, g: &mut Group, layout: &Layout, now: Instant) {
        if g.done {
            return;
        }
        let lines = job_lines(&g.view, layout, now);
        while g.bars.len() < lines.len() {
            let pb = ProgressBar::hidden();
            pb.set_style(ProgressStyle::with_template("{msg}").expect("template"));
            let pb = match g.bars.last() {
                Some(last) => self.multi.insert_after(last, pb),
                None => self.multi.add(pb),
            };
            g.bars.push(pb);
        }
        while g.bars.len() > lines.len() {
            if let Some(pb) = g.bars.pop() {
                pb.finish_and_clear();
                self.multi.remove(&pb);
            }
        }
        for (pb, line) in g.bars.iter().zip(lines) {
            if pb.message() != line {
                pb.set_message(line);
            }
        }
    }

    fn println(&self, job: &str, layout: &Layout, line: &str) {
        let _ = self.multi.println(super::render::message(job, line, layout, self.color));
    }
}

impl Display for Bars {
    fn for_job(&self, job: &str) -> Arc<dyn Reporter> {
        let now = (self.inner.clock)();
        let group = Arc::new(Mutex::new(Group { view: JobView::new(job, now), bars: Vec::new(), done: false }));
        self.inner.groups.lock().expect("groups").push(group.clone());
        self.inner.redraw(&mut group.lock().expect("group"), &self.inner.layout(), now);
        Arc::new(JobBars { inner: self.inner.clone(), group })
    }

    fn print(&self, text: &str) {
        self.inner.multi.suspend(|| {
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
        });
    }

    fn eprint(&self, text: &str) {
        self.inner.multi.suspend(|| eprint!("{text}"));
    }

    fn finish(&self) {
        self.inner.stopped.store(true, Ordering::Relaxed);
        if let Ok(mut shown) = SHOWN.lock() {
            *shown = None;
        }
        for g in self.inner.groups.lock().expect("groups").drain(..) {
            clear(&self.inner.multi, &mut g.lock().expect("group"));
        }
        let _ = self.inner.multi.clear();
    }
}

fn clear(multi: &MultiProgress, g: &mut Group) {
    g.done = true;
    for pb in g.bars.drain(..) {
        pb.finish_and_clear();
        multi.remove(&pb);
    }
}

/// One job's reporter: its events move only its own group.
struct JobBars {
    inner: Arc<Inner>,
    group: Arc<Mutex<Group>>,
}

impl Reporter for JobBars {
    fn event(&self, event: &Event<'_>) {
        let (layout, now) = (self.inner.layout(), (self.inner.clock)());
        let mut g = self.group.lock().expect("group");
        let line = g.view.apply(event, now);
        // Bytes arrive often; the ticker redraws them. Everything else shows at once.
        if !matches!(event, Event::DownloadProgress { .. }) {
            self.inner.redraw(&mut g, &layout, now);
        }
        if let Some(line) = line {
            self.inner.println(&g.view.job, &layout, &line);
        }
    }

    fn finish(&self) {
        clear(&self.inner.multi, &mut self.group.lock().expect("group"));
        self.inner.groups.lock().expect("groups").retain(|g| !Arc::ptr_eq(g, &self.group));
    }
}
