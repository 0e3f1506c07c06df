//! The job page's stage graph (Spark's DAG visualization), drawn on the
//! server as inline SVG: one box per stage listing its RDDs, arrows from
//! the stages whose shuffles it reads, skipped stages greyed.

use super::html::esc;
use super::status::{StageShape, Status};
use std::collections::HashMap;

const BOX_WIDTH: u32 = 240;
const COLUMN_GAP: u32 = 60;
const ROW_GAP: u32 = 20;
const LINE: u32 = 16;
/// Characters of an RDD name a box shows.
const NAME_CHARS: usize = 34;

/// The graph of `stages`, each drawn by its status (`None`: not started).
pub fn stage_graph(stages: &[StageShape], status: impl Fn(u64) -> Option<Status>) -> String {
    if stages.is_empty() {
        return String::new();
    }
    // Column of a stage: the longest chain of parents before it.
    let by_id: HashMap<u64, &StageShape> = stages.iter().map(|s| (s.stage_id, s)).collect();
    let mut column: HashMap<u64, u32> = HashMap::new();
    // Stages are listed by id, and a parent's id is lower than its
    // child's, so one pass in id order sees parents first.
    let mut ordered: Vec<&StageShape> = stages.iter().collect();
    ordered.sort_by_key(|s| s.stage_id);
    for s in &ordered {
        let c = s
            .parents
            .iter()
            .filter(|p| by_id.contains_key(p))
            .map(|p| column.get(p).copied().unwrap_or(0) + 1)
            .max()
            .unwrap_or(0);
        column.insert(s.stage_id, c);
    }
    let height_of = |s: &StageShape| LINE * (s.rdds.len() as u32 + 1) + 12;
    let mut next_y: HashMap<u32, u32> = HashMap::new();
    let mut place: HashMap<u64, (u32, u32, u32)> = HashMap::new();
    for s in &ordered {
        let c = column[&s.stage_id];
        let y = next_y.entry(c).or_insert(ROW_GAP);
        place.insert(
            s.stage_id,
            (ROW_GAP + c * (BOX_WIDTH + COLUMN_GAP), *y, height_of(s)),
        );
        *y += height_of(s) + ROW_GAP;
    }
    let width = place
        .values()
        .map(|(x, _, _)| x + BOX_WIDTH)
        .max()
        .unwrap_or(0)
        + ROW_GAP;
    let height = next_y.values().copied().max().unwrap_or(0);
    let mut svg = format!(
        "<svg class=\"stage-graph\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"12\">\
         <defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"8\" \
         markerHeight=\"8\" orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#555\"/></marker></defs>"
    );
    for s in &ordered {
        let (x, y, h) = place[&s.stage_id];
        for p in &s.parents {
            if let Some((px, py, ph)) = place.get(p) {
                svg.push_str(&format!(
                    "<line x1=\"{}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\" stroke=\"#555\" marker-end=\"url(#arrow)\"/>",
                    px + BOX_WIDTH,
                    py + ph / 2,
                    y + h / 2
                ));
            }
        }
    }
    for s in &ordered {
        let (x, y, h) = place[&s.stage_id];
        let st = status(s.stage_id);
        let (fill, stroke, text, word) = match st {
            Some(Status::Skipped) => ("#eeeeee", "#bbbbbb", "#999999", "skipped"),
            Some(Status::Succeeded) => ("#eaf5ea", "#3c8d3c", "#222222", "succeeded"),
            Some(Status::Failed) => ("#fbeaea", "#c0392b", "#222222", "failed"),
            Some(Status::Running) => ("#e8f0fb", "#2c6fbb", "#222222", "running"),
            None => ("#ffffff", "#888888", "#222222", "pending"),
        };
        svg.push_str(&format!(
            "<g class=\"stage {word}\"><rect x=\"{x}\" y=\"{y}\" width=\"{BOX_WIDTH}\" height=\"{h}\" rx=\"4\" \
             fill=\"{fill}\" stroke=\"{stroke}\"/><text x=\"{}\" y=\"{}\" fill=\"{text}\" font-weight=\"bold\">\
             Stage {} ({word})</text>",
            x + 8,
            y + LINE,
            s.stage_id
        ));
        for (i, rdd) in s.rdds.iter().enumerate() {
            let shown: String = rdd.chars().take(NAME_CHARS).collect();
            let shown = if shown.len() < rdd.len() {
                format!("{shown}…")
            } else {
                shown
            };
            svg.push_str(&format!(
                "<text x=\"{}\" y=\"{}\" fill=\"{text}\"><title>{}</title>{}</text>",
                x + 12,
                y + LINE * (i as u32 + 2),
                esc(rdd),
                esc(&shown)
            ));
        }
        svg.push_str("</g>");
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(id: u64, rdds: &[&str], parents: &[u64]) -> StageShape {
        StageShape {
            stage_id: id,
            rdds: rdds.iter().map(|s| s.to_string()).collect(),
            parents: parents.to_vec(),
        }
    }

    #[test]
    fn stages_are_boxes_with_their_rdds_arrows_to_children_and_skipped_ones_grey() {
        let stages = [
            shape(0, &["range (rdd 0)", "map <&> (rdd 1)"], &[]),
            shape(1, &["text (rdd 2)"], &[]),
            shape(2, &["shuffled (rdd 3)"], &[0, 1]),
        ];
        let svg = stage_graph(&stages, |id| match id {
            0 => Some(Status::Skipped),
            1 => Some(Status::Succeeded),
            _ => None,
        });
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<rect").count(), 3);
        // Two arrows into stage 2.
        assert_eq!(svg.matches("<line").count(), 2);
        assert!(svg.contains("class=\"stage skipped\"><rect") && svg.contains("#eeeeee"));
        assert!(svg.contains("Stage 2 (pending)"));
        // Names are escaped.
        assert!(svg.contains("map &lt;&amp;&gt; (rdd 1)") && !svg.contains("<&>"));
        // Stage 2 is right of both parents.
        let x_of = |id: u64| {
            let at = svg.find(&format!("Stage {id} (")).unwrap();
            let rect = svg[..at].rfind("<rect x=\"").unwrap() + 9;
            svg[rect..]
                .split('"')
                .next()
                .unwrap()
                .parse::<u32>()
                .unwrap()
        };
        assert!(x_of(2) > x_of(0) && x_of(2) > x_of(1));
    }
}
