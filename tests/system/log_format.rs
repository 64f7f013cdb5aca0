//! `cairn serve` logs: `--log-format json` writes one JSON object per line;
//! the default text format has no ANSI colour codes when stderr is a file.

use crate::process::ProcNode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_parse_and_text_logs_have_no_colour_off_a_terminal() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut json =
        ProcNode::start(1, dir.path(), vec!["--log-format".into(), "json".into()]).await?;
    let mut text = ProcNode::start(2, dir.path(), Vec::new()).await?;
    json.stop().await?;
    text.stop().await?;

    let log = json.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    anyhow::ensure!(!lines.is_empty(), "the json node logged nothing");
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| anyhow::anyhow!("not a JSON log line ({e}): {line}"))?;
        anyhow::ensure!(v.get("level").is_some(), "no level in {line}");
    }
    anyhow::ensure!(
        log.contains("serving on"),
        "the startup line is missing: {log}"
    );
    let log = text.log();
    anyhow::ensure!(
        log.contains("serving on"),
        "the startup line is missing: {log}"
    );
    anyhow::ensure!(!log.contains('\u{1b}'), "ANSI escapes in a file log: {log}");
    Ok(())
}
