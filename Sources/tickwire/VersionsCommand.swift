import ArgumentParser
import TickwireCore
import TickwireStore

/// `tickwire query versions`: every version of one stored event, with when it was known, who made it and why.
struct VersionsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "versions",
        abstract: "List every version of one stored event.",
        discussion: """
            One JSON line per version, oldest first: origin (stored, replace, delete, insert, restored), \
            known_time, valid_until (absent while current), the values, and for a correction its number, author, \
            reason and hash. The event is named as in `tickwire correct`.
            """)

    @Option(help: "The event's subject.") var subject: String
    @Option(name: .customLong("event-time"), help: "Its event time (ISO-8601 UTC or integer ns).") var eventTime: String
    @Option(name: .customLong("known-time"), help: "Its known time, when several events share the event time.") var knownTime: String?
    @Option(name: .customLong("trade-id"), help: "Its trade id (TRADE, BUST).") var tradeID: UInt64?
    @Option(help: "Its ordinal among events equal in all the above.") var ordinal: UInt32?
    @Option(help: "The data directory.") var data: String = "./tickwire-data"

    func run() throws {
        let et = try StoreQuery.parseTime(eventTime, field: "--event-time")
        let kt = try knownTime.map { try StoreQuery.parseTime($0, field: "--known-time") }
        let req = CorrectionRequest(line: 0, subject: subject, eventTime: et, knownTime: kt, tradeID: tradeID,
                                    ordinal: ordinal, operation: .delete, author: "", reason: "")
        let (id, versions): (EventIdentity, [EventVersion])
        do { (id, versions) = try StoreCorrections.versions(store: data + "/store", of: req) } catch {
            throw InputError(error.description.replacingOccurrences(of: "line 0: ", with: ""))
        }
        for v in versions {
            var line = "{\"subject\":\(CorrectionJSON.quoted(id.subject)),\"event_time\":\(id.eventTime.rawValue),\"origin\":\"\(v.origin.rawValue)\",\"known_time\":\(v.knownTime.rawValue)"
            if let u = v.validUntil { line += ",\"valid_until\":\(u.rawValue)" }
            if let values = v.values { line += ",\"values\":" + CorrectionJSON.valuesJSON(values) }
            if let r = v.record {
                line += ",\"number\":\(r.number),\"author\":\(CorrectionJSON.quoted(r.author)),\"reason\":\(CorrectionJSON.quoted(r.reason)),\"hash\":\"\(r.hash.hex)\""
            }
            print(line + "}")
        }
    }
}

/// `tickwire query changes --from K1 --to K2`: what corrections changed between two moments.
struct ChangesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "changes",
        abstract: "List the corrections made between two moments, each with the version before and after.",
        discussion: """
            Corrections with known time in (--from, --to]: what a run as of --to sees differently from a run as \
            of --from because of them. One JSON line each: partition, number, known_time, op, the event \
            (subject, event_time, its known_time and ordinal), before and after (absent when deleted or not yet \
            there), author, reason.
            """)

    @Option(help: "The earlier moment (exclusive).") var from: String
    @Option(help: "The later moment (inclusive).") var to: String
    @Option(help: "Only events whose subject matches this pattern.") var subjects: String?
    @Option(help: "The data directory.") var data: String = "./tickwire-data"

    func run() throws {
        let k1 = try StoreQuery.parseTime(from, field: "--from"), k2 = try StoreQuery.parseTime(to, field: "--to")
        guard k1 <= k2 else { throw ValidationError("--from \(k1.iso8601) is after --to \(k2.iso8601)") }
        let pattern: SubjectPattern?
        do { pattern = try subjects.map { try SubjectPattern($0) } } catch { throw ValidationError("--subjects: \(error)") }
        for c in try StoreCorrections.changes(store: data + "/store", from: k1, to: k2, subjects: pattern) {
            let r = c.record, t = r.target
            var line = "{\"partition\":\"\(c.partition)\",\"number\":\(r.number),\"known_time\":\(r.knownTime.rawValue),\"op\":\"\(r.change.name)\""
            line += ",\"subject\":\(CorrectionJSON.quoted(t.subject)),\"event_time\":\(t.eventTime.rawValue),\"event_known_time\":\(t.knownTime.rawValue),\"ordinal\":\(t.ordinal)"
            if let b = c.before { line += ",\"before\":" + CorrectionJSON.valuesJSON(b) }
            if let a = c.after { line += ",\"after\":" + CorrectionJSON.valuesJSON(a) }
            line += ",\"author\":\(CorrectionJSON.quoted(r.author)),\"reason\":\(CorrectionJSON.quoted(r.reason))}"
            print(line)
        }
    }
}
