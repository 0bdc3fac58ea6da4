//! Signal-name templates (`BMU{module}_Cell{cell:02}_mV`) and `HH:MM` times.

/// Substitute `{name}` / `{name:0N}` placeholders with integer values.
/// Unknown placeholders and unbalanced braces are errors.
pub fn expand(template: &str, vars: &[(&str, u32)]) -> Result<String, String> {
    let mut out = String::with_capacity(template.len() + 8);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("template `{template}` has an unclosed `{{`"))?;
        let spec = &after[..close];
        let (name, width) = match spec.split_once(':') {
            Some((n, w)) => {
                let w = w.trim_start_matches('0');
                let width: usize = w
                    .parse()
                    .map_err(|_| format!("template `{template}`: bad width in `{{{spec}}}`"))?;
                (n, width)
            }
            None => (spec, 0),
        };
        let value = vars
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                let known: Vec<_> = vars.iter().map(|(n, _)| format!("{{{n}}}")).collect();
                format!(
                    "template `{template}` uses `{{{name}}}`; allowed here: {}",
                    known.join(", ")
                )
            })?;
        out.push_str(&format!("{value:0width$}"));
        rest = &after[close + 1..];
    }
    if rest.contains('}') {
        return Err(format!("template `{template}` has an unmatched `}}`"));
    }
    out.push_str(rest);
    Ok(out)
}

/// Parse `HH:MM` into minutes since midnight.
pub fn parse_hhmm(s: &str) -> Result<u32, String> {
    let (h, m) = s
        .split_once(':')
        .ok_or_else(|| format!("expected HH:MM, got `{s}`"))?;
    let h: u32 = h.parse().map_err(|_| format!("bad hour in `{s}`"))?;
    let m: u32 = m.parse().map_err(|_| format!("bad minute in `{s}`"))?;
    if h > 23 || m > 59 {
        return Err(format!("`{s}` is not a time of day (00:00..23:59)"));
    }
    Ok(h * 60 + m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_with_padding() {
        let s = expand(
            "BMU{module}_Cell{cell:02}_mV",
            &[("module", 3), ("cell", 7)],
        )
        .unwrap();
        assert_eq!(s, "BMU3_Cell07_mV");
    }

    #[test]
    fn unknown_placeholder_is_named() {
        let e = expand("X{cel}", &[("cell", 1)]).unwrap_err();
        assert!(e.contains("{cel}") && e.contains("{cell}"), "{e}");
        assert!(expand("X{cell", &[("cell", 1)]).is_err());
        assert!(expand("X}", &[]).is_err());
    }

    #[test]
    fn hhmm() {
        assert_eq!(parse_hhmm("06:30"), Ok(390));
        assert!(parse_hhmm("24:00").is_err());
        assert!(parse_hhmm("6").is_err());
    }
}
