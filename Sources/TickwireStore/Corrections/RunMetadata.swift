import TickwireCore

/// What a run needs to be repeated exactly: the moment its data was known as of. A read "as known now" is pinned
/// to the moment it starts, so that `--as-of` that moment gives the same output later, whatever was written or
/// corrected since.
public enum RunMetadata {
    /// The query with its as-of set: its own, or `now`.
    public static func pinned(_ q: StoreQuery, now: Nanos = Nanos.now()) -> StoreQuery {
        var p = q
        if p.asOf == nil { p.asOf = now }
        return p
    }

    /// A JSON line to put before a run's JSONL output:
    /// `{"tickwire":{"command":"replay","as_of":K,"as_of_iso":"…","subjects":"…","from":F,"to":T}}`.
    public static func jsonHeader(command: String, subjects: String, _ q: StoreQuery) -> String {
        var out = [UInt8]()
        EventText.appendJSONString(subjects, to: &out)
        let k = q.asOf ?? Nanos(.max)
        return "{\"tickwire\":{\"command\":\"\(command)\",\"as_of\":\(k.rawValue),\"as_of_iso\":\"\(k.iso8601)\",\"subjects\":"
            + String(decoding: out, as: UTF8.self) + ",\"from\":\(q.from.rawValue),\"to\":\(q.to.rawValue)}}"
    }

    /// The same, as Arrow schema / Parquet file key-value metadata: key `tickwire`, the header's JSON as value.
    public static func keyValues(command: String, subjects: String, _ q: StoreQuery) -> [(key: String, value: String)] {
        [("tickwire", jsonHeader(command: command, subjects: subjects, q))]
    }
}
