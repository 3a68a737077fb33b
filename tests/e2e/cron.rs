//! Cron Triggers end to end: `isobar run --test-scheduled` (`/__scheduled?cron=...`, as wrangler
//! has it), the admin API's `POST /tenants/NAME/scheduled`, configured `crons` firing exactly
//! once per schedule per process on a server with several cores, failures logged and counted,
//! and invalid expressions refused with their place. The Worker is `tests/workers/scheduled.js`.

use std::time::Duration;

use isobar_e2e::{Isobar, TempDir, eventually, run_expecting_failure, workspace};

/// Whether `probe` holds within `timeout` (polled every 50 ms).
fn until(timeout: Duration, mut probe: impl FnMut() -> bool) -> bool {
    eventually(timeout, || probe().then_some(())).is_some()
}

/// The `fired ...` lines the Worker logged.
fn fired_lines(isobar: &Isobar) -> Vec<String> {
    isobar.stderr().lines().filter(|l| l.contains("fired cron=")).map(str::to_string).collect()
}

#[test]
fn test_scheduled_runs_the_handler_and_answers_when_it_is_done() {
    let isobar = Isobar::start(&["run", "tests/workers/scheduled.js", "--test-scheduled", "--admin", "127.0.0.1:0"]);
    let r = isobar.get("/__scheduled?cron=*/5+*+*+*+*");
    assert_eq!((r.status, r.text().as_str()), (200, "Ran scheduled event\n"));
    assert!(until(Duration::from_secs(10), || !fired_lines(&isobar).is_empty()));
    let lines = fired_lines(&isobar);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("fired cron=*/5 * * * * scheduledTime="), "{}", lines[0]);
    assert!(lines[0].ends_with(" env=- true"), "controller is a ScheduledController: {}", lines[0]);

    // A handler that throws, and one that rejects later: 500, logged, counted.
    let r = isobar.get("/__scheduled?cron=0+0+1+1+*");
    assert_eq!(r.status, 500);
    let r = isobar.get("/__scheduled?cron=0+0+2+1+*");
    assert_eq!(r.status, 500);
    // The log thread writes behind the response.
    let logged = until(Duration::from_secs(10), || {
        let stderr = isobar.stderr();
        stderr.contains("thrown on purpose") && stderr.contains("rejected on purpose")
    });
    assert!(logged, "{}", isobar.stderr());
    let counted = until(Duration::from_secs(10), || {
        let metrics = isobar.metrics();
        metrics.sum("isobar_tenant_scheduled_total", &[]) == 3.0
            && metrics.sum("isobar_tenant_scheduled_failed_total", &[]) == 2.0
    });
    assert!(counted, "scheduled metrics: {:?}", isobar.admin_request("GET", "/metrics", &[], b"").text());
    // Fetch is served as usual beside it.
    assert_eq!(isobar.get("/").text(), "fetch\n");
}

#[test]
fn without_test_scheduled_the_path_is_the_workers_own() {
    let isobar = Isobar::start(&["run", "tests/workers/scheduled.js"]);
    assert_eq!(isobar.get("/__scheduled").text(), "fetch\n");
    assert!(fired_lines(&isobar).is_empty());
}

#[test]
fn a_worker_without_a_scheduled_handler_fails_its_firing_clearly() {
    let isobar = Isobar::start(&["run", "examples/hello.js", "--test-scheduled"]);
    let r = isobar.get("/__scheduled");
    assert_eq!(r.status, 500);
    let logged = until(Duration::from_secs(10), || isobar.stderr().contains("has no scheduled handler"));
    assert!(logged, "{}", isobar.stderr());
}

#[test]
fn configured_crons_fire_once_per_schedule_with_several_cores_and_by_hand() {
    let dir = TempDir::new("cron");
    let script = workspace().join("tests/workers/scheduled.js");
    let config = dir.write(
        "isobar.toml",
        &format!(
            "[[tenant]]\nname = \"jobs\"\nscript = \"{}\"\nroutes = [\"*\"]\nvars = {{ WHO = \"jobs\" }}\n\
             crons = [\"* * * * *\", \"*/1 * * * *\"]\n",
            script.display()
        ),
    );
    let isobar = Isobar::serve(&config, &["--cores", "2", "--admin", "127.0.0.1:0"]);

    // By hand, through the admin API.
    let r = isobar.admin_request("POST", "/tenants/jobs/scheduled?cron=15+10+*+*+*", &[], b"");
    assert_eq!(r.status, 202, "{}", r.text());
    assert!(until(Duration::from_secs(10), || fired_lines(&isobar).iter().any(|l| l.contains("cron=15 10 * * *"))));
    assert_eq!(isobar.admin_request("POST", "/tenants/nobody/scheduled", &[], b"").status, 404);

    // The next minute boundary: each of the two schedules fires once, on one of the two
    // cores, with the minute as its scheduledTime.
    let fired = |cron: &str| -> Vec<String> {
        fired_lines(&isobar).into_iter().filter(|l| l.contains(&format!("cron={cron} "))).collect()
    };
    assert!(
        until(Duration::from_secs(75), || !fired("* * * * *").is_empty() && !fired("*/1 * * * *").is_empty()),
        "no firing within 75 s: {}",
        isobar.stderr()
    );
    // Let any duplicate show (a second core firing the same minute would log within ms).
    std::thread::sleep(Duration::from_secs(2));
    for cron in ["* * * * *", "*/1 * * * *"] {
        let lines = fired(cron);
        let minute = lines[0].split("scheduledTime=").nth(1).unwrap().split(' ').next().unwrap().to_string();
        let same: Vec<&String> = lines.iter().filter(|l| l.contains(&format!("scheduledTime={minute} "))).collect();
        assert_eq!(same.len(), 1, "{cron} fired more than once for {minute}: {lines:?}");
        let ms: u64 = minute.parse().unwrap();
        assert_eq!(ms % 60_000, 0, "scheduledTime is the minute it stood for: {minute}");
        assert!(lines[0].contains(" env=jobs "), "env reaches scheduled(): {}", lines[0]);
    }
}

#[test]
fn an_invalid_cron_is_a_configuration_error_with_its_place() {
    let dir = TempDir::new("cron-bad");
    let script = workspace().join("tests/workers/scheduled.js");
    let config = dir.write(
        "isobar.toml",
        &format!(
            "[[tenant]]\nname = \"jobs\"\nscript = \"{}\"\nroutes = [\"*\"]\ncrons = [\"61 * * * *\"]\n",
            script.display()
        ),
    );
    let (code, stderr) = run_expecting_failure(&["serve", "--config", config.to_str().unwrap()]);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("isobar.toml:5:") && stderr.contains("tenant.crons"), "{stderr}");
    let (_, stderr) = run_expecting_failure(&["run", "tests/workers/scheduled.js", "--cron", "* * *"]);
    assert!(stderr.contains("--cron") && stderr.contains("five fields"), "{stderr}");
}
