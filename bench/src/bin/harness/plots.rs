//! The run's plots as SVG files (plotters' SVG backend): per-request cost against the number of
//! tenants for isolates, processes and threads (switch.svg), RSS against the number of tenants
//! (memory.svg), cold-start bars (coldstart.svg), and throughput, p99 and server CPU bars
//! (throughput.svg, latency.svg, cpu.svg). A plot without data is not written; a plot that fails is
//! reported and skipped, never the run.

use std::error::Error;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::measure::Spread;
use crate::report::Results;

type Outcome = Result<(), Box<dyn Error>>;
/// Draws one plot into a path; None when the results have nothing for it.
type PlotFn<'a> = dyn Fn(&Path) -> Option<Outcome> + 'a;

const COLORS: [RGBColor; 9] = [
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(140, 86, 75),
    RGBColor(23, 190, 207),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
];

/// Writes every plot the results have data for into `dir`; returns the files written.
pub fn write_all(results: &Results, dir: &Path) -> Vec<PathBuf> {
    if let Err(error) = std::fs::create_dir_all(dir) {
        eprintln!("harness: warning: cannot create {}: {error}", dir.display());
        return vec![];
    }
    let plots: [(&str, &PlotFn); 6] = [
        ("switch.svg", &|p| switch(results, p)),
        ("memory.svg", &|p| memory(results, p)),
        ("coldstart.svg", &|p| coldstart(results, p)),
        ("throughput.svg", &|p| throughput(results, p, "requests_per_second")),
        ("latency.svg", &|p| throughput(results, p, "p99_us")),
        ("cpu.svg", &|p| throughput(results, p, "server_cpu_us_per_request")),
    ];
    let mut written = Vec::new();
    for (name, plot) in plots {
        let path = dir.join(name);
        match plot(&path) {
            None => {}
            Some(Ok(())) => written.push(path),
            Some(Err(error)) => eprintln!("harness: warning: plot {name}: {error}"),
        }
    }
    written
}

/// A series of (x, y) points with a name.
type Line = (String, Vec<(f64, f64)>);

fn switch(results: &Results, path: &Path) -> Option<Outcome> {
    let r = results.switch.as_ref()?;
    let lines = |working_set: bool| -> Vec<Line> {
        let mut names: Vec<String> = Vec::new();
        for g in &r.groups {
            for s in &g.systems {
                if !names.contains(&s.system) {
                    names.push(s.system.clone());
                }
            }
        }
        names
            .into_iter()
            .map(|name| {
                let points = r
                    .groups
                    .iter()
                    .filter_map(|g| {
                        let sys = g.systems.iter().find(|s| s.system == name)?;
                        let v = sys.variant(working_set, true)?.series.median("server_cpu_us_per_request")?;
                        Some((g.tenants as f64, v))
                    })
                    .collect();
                (name, points)
            })
            .filter(|(_, points): &Line| !points.is_empty())
            .collect()
    };
    let trivial = lines(false);
    if trivial.is_empty() {
        return None;
    }
    let with_ws = lines(true);
    Some((|| -> Outcome {
        let root = SVGBackend::new(path, (1280, 560)).into_drawing_area();
        root.fill(&WHITE)?;
        let panels = root.split_evenly((1, 2));
        line_chart(&panels[0], "Server CPU per request, round-robin over N tenants", &trivial, "us", false)?;
        line_chart(&panels[1], "... each request writing its own 64 KiB working set", &with_ws, "us", false)?;
        root.present()?;
        Ok(())
    })())
}

fn memory(results: &Results, path: &Path) -> Option<Outcome> {
    let mut lines: Vec<Line> = Vec::new();
    if let Some(m) = &results.memory {
        for rows in [&m.isobar, &m.workerd, &m.threads] {
            let points: Vec<(f64, f64)> = rows
                .iter()
                .filter(|r| r.error.is_none())
                .map(|r| (r.tenants as f64, r.rss_after_bytes as f64 / 1e6))
                .collect();
            if let Some(first) = rows.first()
                && !points.is_empty()
            {
                lines.push((format!("{} (RSS)", first.system), points));
            }
        }
    }
    if let Some(r) = &results.switch {
        for name in ["process per tenant (C)", "node per tenant", "bun per tenant", "deno per tenant"] {
            // From two processes on: a lone process's binary text counts as private to it.
            let points: Vec<(f64, f64)> = r
                .groups
                .iter()
                .filter(|g| g.tenants > 1)
                .filter_map(|g| {
                    let sys = g.systems.iter().find(|s| s.system == name)?;
                    Some((g.tenants as f64, sys.memory_warm?.uss_bytes as f64 / 1e6))
                })
                .collect();
            if !points.is_empty() {
                lines.push((format!("{name} (sum of USS)"), points));
            }
        }
    }
    if lines.is_empty() {
        return None;
    }
    Some((|| -> Outcome {
        let root = SVGBackend::new(path, (900, 600)).into_drawing_area();
        root.fill(&WHITE)?;
        line_chart(&root, "Memory against live tenants (MB)", &lines, "MB", true)?;
        root.present()?;
        Ok(())
    })())
}

/// A chart of lines over a log x axis (tenants); log y too when `log_y`.
fn line_chart(area: &DrawingArea<SVGBackend, Shift>, title: &str, lines: &[Line], unit: &str, log_y: bool) -> Outcome {
    let all = lines.iter().flat_map(|(_, p)| p.iter());
    let x_max = all.clone().map(|p| p.0).fold(1.0, f64::max) * 1.5;
    let y_max = all.clone().map(|p| p.1).fold(f64::MIN_POSITIVE, f64::max) * 1.3;
    let y_min = all.map(|p| p.1).filter(|v| *v > 0.0).fold(f64::MAX, f64::min);
    let mut builder = ChartBuilder::on(area);
    builder.caption(title, ("sans-serif", 17)).margin(12).x_label_area_size(40).y_label_area_size(64);
    if log_y {
        let mut chart =
            builder.build_cartesian_2d((0.8f64..x_max).log_scale(), ((y_min * 0.5).max(0.01)..y_max).log_scale())?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v}"))
            .x_desc("tenants (log)")
            .y_desc(format!("{unit} (log)"))
            .draw()?;
        draw_lines(&mut chart, lines)?;
    } else {
        let mut chart = builder.build_cartesian_2d((0.8f64..x_max).log_scale(), 0f64..y_max)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .x_label_formatter(&|v| format!("{v:.0}"))
            .x_desc("tenants (log)")
            .y_desc(unit)
            .draw()?;
        draw_lines(&mut chart, lines)?;
    }
    Ok(())
}

fn draw_lines<'a, X, Y>(chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>, lines: &[Line]) -> Outcome
where
    X: plotters::coord::ranged1d::Ranged<ValueType = f64>,
    Y: plotters::coord::ranged1d::Ranged<ValueType = f64>,
{
    for (i, (name, points)) in lines.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    Ok(())
}

/// A bar: label, value and its range over rounds.
type Bar = (String, Spread);

fn coldstart(results: &Results, path: &Path) -> Option<Outcome> {
    let c = results.coldstart.as_ref()?;
    let launches: Vec<Bar> = c.launches.iter().filter_map(|r| Some((r.system.clone(), r.spread?))).collect();
    let tenants: Vec<Bar> = c.new_tenants.iter().filter_map(|r| Some((r.system.clone(), r.spread?))).collect();
    if launches.is_empty() && tenants.is_empty() {
        return None;
    }
    Some((|| -> Outcome {
        let root = SVGBackend::new(path, (1280, 520)).into_drawing_area();
        root.fill(&WHITE)?;
        let panels = root.split_evenly((1, 2));
        bar_chart(&panels[0], "Process launch -> first 200 (ms)", &launches, |v| format!("{v:.1} ms"))?;
        bar_chart(&panels[1], "A new tenant in a running isobar (ms)", &tenants, |v| format!("{v:.2} ms"))?;
        root.present()?;
        Ok(())
    })())
}

fn throughput(results: &Results, path: &Path, field: &str) -> Option<Outcome> {
    let t = results.throughput.as_ref()?;
    let connections = &results.plan.throughput_connections;
    let panels_data: Vec<(usize, Vec<Bar>)> = connections
        .iter()
        .map(|&c| {
            let bars = t
                .systems
                .iter()
                .filter_map(|s| Some((s.system.clone(), s.series(c)?.spread(field)?)))
                .collect::<Vec<Bar>>();
            (c, bars)
        })
        .filter(|(_, bars)| !bars.is_empty())
        .collect();
    if panels_data.is_empty() {
        return None;
    }
    Some((|| -> Outcome {
        let width = 560 * panels_data.len() as u32;
        let root = SVGBackend::new(path, (width.max(560), 520)).into_drawing_area();
        root.fill(&WHITE)?;
        let panels = root.split_evenly((1, panels_data.len()));
        for (panel, (c, bars)) in panels.iter().zip(&panels_data) {
            match field {
                "p99_us" => {
                    bar_chart(panel, &format!("p99 latency, {c} connections (us)"), bars, |v| format!("{v:.0} us"))?
                }
                "server_cpu_us_per_request" => {
                    bar_chart(panel, &format!("Server CPU per request, {c} connections (us)"), bars, |v| {
                        format!("{v:.1} us")
                    })?
                }
                _ => bar_chart(panel, &format!("Requests/s, {c} connections"), bars, |v| format!("{v:.0}"))?,
            }
        }
        root.present()?;
        Ok(())
    })())
}

/// Horizontal bars (median) with a min-max whisker (cut at the chart's edge: the scale follows
/// the medians, not the outliers), each labelled with its name and value.
fn bar_chart(area: &DrawingArea<SVGBackend, Shift>, title: &str, bars: &[Bar], value: fn(f64) -> String) -> Outcome {
    let x_max = bars.iter().map(|(_, s)| s.median).fold(f64::MIN_POSITIVE, f64::max) * 2.2;
    let rows = bars.len().max(1) as f64;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 17))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(8)
        .build_cartesian_2d(0f64..x_max, 0f64..rows)?;
    chart.configure_mesh().disable_y_mesh().light_line_style(WHITE).y_labels(0).draw()?;
    for (i, (name, s)) in bars.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let top = rows - i as f64 - 0.15;
        let bottom = rows - i as f64 - 0.85;
        let middle = (top + bottom) / 2.0;
        chart
            .draw_series(std::iter::once(Rectangle::new([(0.0, bottom), (s.median, top)], color.mix(0.75).filled())))?;
        let whisker = (s.min.min(x_max), s.max.min(x_max));
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(whisker.0, middle), (whisker.1, middle)],
            BLACK.stroke_width(1),
        )))?;
        chart.draw_series(std::iter::once(Text::new(
            format!("{name}: {}", value(s.median)),
            (s.median + x_max * 0.01, top - 0.05),
            ("sans-serif", 12).into_font(),
        )))?;
    }
    Ok(())
}
