//! A response as it streams: token bytes become text, and the text the client sees is the
//! text `respond` would return for the same tokens, given out piece by piece as soon as no
//! later token can change it.

/// Decodes bytes that arrive in pieces exactly as `String::from_utf8_lossy` decodes them all
/// at once: a character split between two tokens waits for its second part, and a byte that
/// cannot start or continue a character becomes U+FFFD.
#[derive(Debug, Default)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// The text `bytes` complete.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut text = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(valid) => {
                    text.push_str(valid);
                    self.pending.clear();
                    return text;
                }
                Err(err) => {
                    let valid = err.valid_up_to();
                    text.push_str(std::str::from_utf8(&self.pending[..valid]).expect("checked above"));
                    match err.error_len() {
                        Some(invalid) => {
                            text.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + invalid);
                        }
                        // The bytes left may start a character the next token completes.
                        None => {
                            self.pending.drain(..valid);
                            return text;
                        }
                    }
                }
            }
        }
    }

    /// The text of what is left at the end (an unfinished character is U+FFFD).
    pub fn finish(&mut self) -> String {
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        text
    }
}

/// What the client sees of the generated text.
#[derive(Debug, Clone, Default)]
pub struct TextRules {
    /// A marker removed wherever it appears (the template's response marker, as
    /// [`crate::template::PromptTemplate::extract_response`] removes it).
    pub marker: Option<&'static str>,
    /// Trim white space at both ends, as `extract_response` does.
    pub trim: bool,
    /// The response ends before the first of these (OpenAI's `stop`).
    pub stops: Vec<String>,
}

/// The visible text of a response so far: feed it text with [`ResponseText::push`], and
/// send what it returns.
#[derive(Debug, Default)]
pub struct ResponseText {
    rules: TextRules,
    raw: String,
    sent: String,
}

impl ResponseText {
    pub fn new(rules: TextRules) -> Self {
        Self { rules, ..Self::default() }
    }

    /// Adds generated text; returns the text that became visible, and whether a stop
    /// sequence has ended the response.
    pub fn push(&mut self, text: &str) -> (String, bool) {
        self.raw.push_str(text);
        let (visible, stopped) = self.visible(false);
        (self.advance(&visible), stopped)
    }

    /// The rest of the response once generation has ended.
    pub fn finish(&mut self) -> String {
        let (visible, _) = self.visible(true);
        self.advance(&visible)
    }

    /// Everything sent so far.
    pub fn sent(&self) -> &str {
        &self.sent
    }

    fn advance(&mut self, visible: &str) -> String {
        // Held-back text only ever grows into what follows it, so `visible` extends `sent`.
        match visible.strip_prefix(self.sent.as_str()) {
            Some(new) if !new.is_empty() => {
                let new = new.to_string();
                self.sent.push_str(&new);
                new
            }
            _ => String::new(),
        }
    }

    /// The visible text: the raw text without markers, cut at the first stop sequence, and
    /// trimmed. Before the end it leaves out what later text could still change: a tail
    /// that may begin a marker or a stop sequence, and trailing white space when trimming.
    fn visible(&self, at_end: bool) -> (String, bool) {
        let mut raw = self.raw.as_str();
        if let (Some(marker), false) = (self.rules.marker, at_end) {
            raw = &raw[..raw.len() - partial_match(raw, &[marker])];
        }
        let mut text = match self.rules.marker {
            Some(marker) => raw.replace(marker, ""),
            None => raw.to_string(),
        };
        let stop_at = self.rules.stops.iter().filter_map(|stop| text.find(stop.as_str())).min();
        let stopped = stop_at.is_some();
        match stop_at {
            Some(at) => text.truncate(at),
            None if !at_end => text.truncate(text.len() - partial_match(&text, &self.rules.stops)),
            None => {}
        }
        if self.rules.trim {
            // Before the end this holds back trailing white space until text follows it.
            text = text.trim().to_string();
        }
        (text, stopped)
    }
}

/// The length of the longest tail of `text` that is the start (not the whole) of a pattern.
fn partial_match(text: &str, patterns: &[impl AsRef<str>]) -> usize {
    patterns
        .iter()
        .flat_map(|pattern| {
            let pattern = pattern.as_ref();
            (1..pattern.len()).filter(|&n| pattern.is_char_boundary(n) && text.ends_with(&pattern[..n])).max()
        })
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pushes `pieces` one at a time; returns the pieces sent and the whole text.
    fn stream(rules: TextRules, pieces: &[&str]) -> (Vec<String>, String) {
        let mut response = ResponseText::new(rules);
        let mut sent = Vec::new();
        for piece in pieces {
            let (new, stopped) = response.push(piece);
            sent.push(new);
            if stopped {
                break;
            }
        }
        sent.push(response.finish());
        (sent, response.sent().to_string())
    }

    #[test]
    fn utf8_pieces_decode_as_the_whole() {
        let bytes = "héllo wörld ✓".as_bytes().to_vec();
        let mut broken = bytes.clone();
        broken.insert(3, 0xff); // an invalid byte
        broken.push(0xe2); // an unfinished character at the end
        for data in [bytes, broken] {
            for split in 1..data.len() {
                let mut stream = Utf8Stream::default();
                let mut text = String::new();
                for piece in data.chunks(split) {
                    text += &stream.push(piece);
                }
                text += &stream.finish();
                assert_eq!(text, String::from_utf8_lossy(&data), "pieces of {split}");
            }
        }
    }

    #[test]
    fn the_streamed_text_is_what_respond_extracts() {
        let rules = TextRules { marker: Some("### Response:"), trim: true, stops: vec![] };
        let generated = "\n\n### Response:\nThe sky is blue.  \n";
        // Every way of cutting the text into pieces of 1-4 bytes at character boundaries.
        for size in 1..5 {
            let pieces: Vec<&str> =
                generated.as_bytes().chunks(size).map(|c| std::str::from_utf8(c).unwrap()).collect();
            let (sent, whole) = stream(rules.clone(), &pieces);
            assert_eq!(whole, "The sky is blue.");
            assert_eq!(sent.concat(), whole);
            // Nothing is sent before the marker is out of the way.
            assert!(sent.iter().take_while(|p| p.is_empty()).count() >= "\n\n### Response:\nT".len() / size - 1);
        }
    }

    #[test]
    fn a_stop_sequence_ends_the_text_before_it() {
        let rules = TextRules { marker: None, trim: false, stops: vec!["END".into(), "\n\n".into()] };
        let (sent, whole) = stream(rules.clone(), &["Hello", " E", "N", "D", "more"]);
        assert_eq!(whole, "Hello ");
        assert_eq!(sent, ["Hello", " ", "", "", ""]);
        let (_, whole) = stream(rules.clone(), &["a\n", "\nb"]);
        assert_eq!(whole, "a");
        // A tail that only looks like a stop's start is sent once it cannot be one.
        let (sent, whole) = stream(rules, &["EN", "ough"]);
        assert_eq!((sent.concat(), whole.as_str()), ("ENough".to_string(), "ENough"));
        assert_eq!(sent[0], "");
    }
}
