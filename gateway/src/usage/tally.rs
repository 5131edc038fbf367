//! Accumulates the usage reports of one response, JSON body or SSE events,
//! and turns them into a [`UsageOutcome`].

use serde_json::Value;

use super::extract::read_usage;
use super::fields::Fields;
use super::{Dialect, Usage, UsageOutcome};

/// Counts as reported, before normalisation; later reports overwrite.
#[derive(Default)]
pub(super) struct Tally {
    input: Option<u64>,
    output: Option<u64>,
    cache_read: Option<u64>,
    cache_write: Option<u64>,
    total: Option<u64>,
    /// Input was reported without cached tokens (Anthropic).
    cache_apart: bool,
    tool_uses: Option<std::collections::BTreeMap<String, u64>>,
    cache_write_1h: Option<u64>,
    pub(super) model: Option<String>,
    seen: bool,
    malformed: Option<String>,
    /// Anthropic `message_start` usage, `message_delta` usage, `message_stop`.
    started: bool,
    delta: bool,
    stopped: bool,
    error_event: bool,
    pub(super) oversized: bool,
}

impl Tally {
    pub(super) fn event(&mut self, event: &str, data: &[u8], dialect: Dialect) {
        // Not JSON (`[DONE]`, keep-alives): not usage.
        let Ok(f) = serde_json::from_slice::<Fields>(data) else {
            return;
        };
        match f.kind.as_deref().unwrap_or(event) {
            "message_start" if dialect.anthropic() => {
                let m = f.message.unwrap_or_default();
                self.started |= self.merge(m.usage.as_ref(), dialect);
                self.model = m.model.or(self.model.take());
            }
            "message_stop" if dialect.anthropic() => self.stopped = true,
            "error" => self.error_event = true,
            kind if kind.starts_with("response.") && dialect.openai() => {
                let r = f.response.unwrap_or_default();
                if self.merge(r.usage.as_ref(), dialect) {
                    self.tool_calls(r.tool_calls);
                }
                self.model = r.model.or(self.model.take());
            }
            kind => {
                self.delta |= self.merge(f.usage.as_ref(), dialect) && kind == "message_delta";
                self.model = f.model.or(self.model.take());
            }
        }
    }

    /// The calls of provider-run tools counted in the `output` of the
    /// object whose usage was just read (Responses API): the uses billed.
    pub(super) fn tool_calls(&mut self, calls: Option<std::collections::BTreeMap<String, u64>>) {
        if calls.is_some() {
            self.tool_uses = calls;
        }
    }

    /// Takes one usage report; true when it carried counts.
    pub(super) fn merge(&mut self, usage: Option<&Value>, dialect: Dialect) -> bool {
        match usage.map(|u| read_usage(u, dialect)) {
            None | Some(Ok(None)) => false,
            Some(Err(e)) => {
                self.malformed.get_or_insert(e);
                false
            }
            Some(Ok(Some(r))) => {
                self.input = r.input.or(self.input);
                self.output = r.output.or(self.output);
                self.cache_read = r.cache_read.or(self.cache_read);
                self.cache_write = r.cache_write.or(self.cache_write);
                self.total = r.total.or(self.total);
                self.cache_apart |= r.cache_apart;
                self.tool_uses = r.tool_uses.or(self.tool_uses.take());
                self.cache_write_1h = r.cache_write_1h.or(self.cache_write_1h);
                self.seen = true;
                true
            }
        }
    }

    pub(super) fn outcome(self, complete: bool) -> UsageOutcome {
        if let Some(e) = self.malformed {
            return UsageOutcome::Malformed(e);
        }
        if !self.seen {
            return if self.oversized {
                UsageOutcome::TooLarge
            } else {
                UsageOutcome::Missing
            };
        }
        let (cache_read, cache_write) =
            (self.cache_read.unwrap_or(0), self.cache_write.unwrap_or(0));
        let mut input = self.input.unwrap_or(0);
        if self.cache_apart {
            input = input.saturating_add(cache_read).saturating_add(cache_write);
        }
        // Embeddings report no completion tokens: total == prompt is complete.
        let no_output = !self.cache_apart && self.input.is_some() && self.total == self.input;
        let reason = if self.input.is_none() {
            Some("input token count missing")
        } else if self.output.is_none() && !no_output {
            Some("output token count missing")
        } else if self.started && !self.delta && self.error_event {
            Some("error event before the final message_delta; output is a lower bound")
        } else if self.started && !self.delta {
            Some("no message_delta after message_start; output is a lower bound")
        } else if self.started && !self.stopped && !complete {
            Some("stream cut off before message_stop")
        } else {
            None
        };
        let usage = Usage {
            input_tokens: input,
            output_tokens: self.output.unwrap_or(0),
            cached_input_tokens: cache_read,
            cache_write_tokens: cache_write,
            // Never more than the writes it is a part of.
            cache_write_1h_tokens: self.cache_write_1h.unwrap_or(0).min(cache_write),
            server_tool_uses: self.tool_uses,
            model: self.model,
        };
        match (reason, complete) {
            (None, _) => UsageOutcome::Found(usage),
            (Some(r), true) => UsageOutcome::Partial(usage, r.into()),
            (Some(r), false) => UsageOutcome::Partial(usage, format!("{r} (body cut off)")),
        }
    }
}
