/// Renders Prometheus text as the table `tickwire stats` prints to a person.
public enum StatsTable {
    public struct Sample: Equatable {
        public var name: String
        public var labels: [String: String]
        public var value: Double
    }

    /// Parses the text exposition format (comments skipped; label values without escaped quotes).
    public static func parse(_ text: String) -> [Sample] {
        var out = [Sample]()
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            let head = line[..<space]
            var labels = [String: String]()
            var name = String(head)
            if let open = head.firstIndex(of: "{"), head.hasSuffix("}") {
                name = String(head[..<open])
                for pair in head[head.index(after: open)..<head.index(before: head.endIndex)].split(separator: ",") {
                    let kv = pair.split(separator: "=", maxSplits: 1)
                    if kv.count == 2 { labels[String(kv[0])] = String(kv[1].dropFirst().dropLast()) }
                }
            }
            out.append(Sample(name: name, labels: labels, value: value))
        }
        return out
    }

    public static func render(prometheusText: String) -> String {
        let samples = parse(prometheusText)
        func value(_ name: String) -> String {
            samples.first { $0.name == name }.map { format($0.value) } ?? "-"
        }
        func mib(_ name: String) -> String {
            samples.first { $0.name == name }.map { format(($0.value / 1_048_576).rounded()) } ?? "-"
        }
        var lines = [
            "uptime        \(value("tickwire_uptime_seconds")) s",
            "ring          \(value("tickwire_ring_published_total")) published, \(value("tickwire_ring_capacity")) slots",
            "subjects      \(value("tickwire_subjects"))",
            "publish       \(value("tickwire_publish_subscribers")) subscribers, \(value("tickwire_publish_stalled_subscribers")) stalled, "
                + "\(value("tickwire_publish_high_water_mark")) messages each, \(mib("tickwire_publish_queued_bound_bytes")) of "
                + "\(mib("tickwire_publish_memory_budget_bytes")) MiB queued at most, \(value("tickwire_publish_subscribers_cut_total")) cut",
            "",
            "SOURCE                          COUNTER              VALUE",
        ]
        for s in samples where s.name == "tickwire_source_total" {
            lines.append(pad(s.labels["source"] ?? "", 32) + pad(s.labels["counter"] ?? "", 16) + lpad(format(s.value), 10))
        }
        lines.append("")
        lines.append("SUBSCRIPTION                     DELIVERED    DROPPED        LAG    RESYNCS     STALLS")
        var subs = [String]()
        for s in samples where s.name.hasPrefix("tickwire_subscription_") {
            if let n = s.labels["subscription"], !subs.contains(n) { subs.append(n) }
        }
        for sub in subs {
            func field(_ f: String) -> String {
                samples.first { $0.name.hasPrefix("tickwire_subscription_\(f)") && $0.labels["subscription"] == sub }.map { format($0.value) } ?? "-"
            }
            lines.append(pad(sub, 32) + ["delivered", "dropped", "lag", "resyncs", "stalls"].map { lpad(field($0), 11) }.joined())
        }
        // Everything else the daemon counts: alerts per rule, trades per outcome and reason, the store, latencies.
        let shown = ["tickwire_uptime_seconds", "tickwire_ring_published_total", "tickwire_ring_capacity", "tickwire_subjects",
                     "tickwire_source_total", "tickwire_publish_subscribers", "tickwire_publish_stalled_subscribers",
                     "tickwire_publish_high_water_mark", "tickwire_publish_queued_bound_bytes",
                     "tickwire_publish_memory_budget_bytes", "tickwire_publish_subscribers_cut_total"]
        var other = [String]()
        for sample in samples where !shown.contains(sample.name) && !sample.name.hasPrefix("tickwire_subscription_") {
            if sample.name.hasSuffix("_bucket") || (sample.value == 0 && sample.name.hasSuffix("_total") && !sample.labels.isEmpty) { continue }
            let labels = sample.labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            other.append(pad(sample.name.replacingOccurrences(of: "tickwire_", with: ""), 40) + pad(labels, 28) + lpad(format(sample.value), 14))
        }
        if !other.isEmpty {
            lines.append("")
            lines.append("OTHER (zero counters with labels left out)")
            lines.append(contentsOf: other)
        }
        return lines.joined(separator: "\n")
    }

    static func format(_ v: Double) -> String { v == v.rounded() && abs(v) < 1e15 ? String(Int64(v)) : String(v) }
    static func pad(_ s: String, _ w: Int) -> String { s.count >= w ? s + " " : s + String(repeating: " ", count: w - s.count) }
    static func lpad(_ s: String, _ w: Int) -> String { s.count >= w ? " " + s : String(repeating: " ", count: w - s.count) + s }
}
