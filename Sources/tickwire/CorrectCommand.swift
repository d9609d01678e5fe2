import ArgumentParser
import Foundation
import TickwireCore
import TickwireStore

/// `tickwire correct --file corrections.jsonl`: corrections of stored events, kept as new versions.
struct CorrectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "correct",
        abstract: "Correct stored events (new versions; nothing is overwritten).",
        discussion: """
            One JSON object a line: the event — subject, event_time (ISO-8601 UTC or integer ns), and when needed \
            known_time, trade_id or ordinal — then op (replace, delete or insert; replace when "set" is given), \
            "set": the new fields by their replay names ({"price":"101.25","size":100}; for insert, every field, \
            and "kind" unless the subject's last token names it), author and reason (both required). Every line \
            is checked before anything is written; a line that is malformed or names no stored event (or more \
            than one) is an error naming it, and nothing is written. Each correction is known from the moment it \
            is written: prints one JSON line per correction with its known_time and hash.
            """)

    @Option(help: "The corrections, one JSON object a line (- for standard input).") var file: String
    @Option(help: "The data directory.") var data: String = "./tickwire-data"

    func run() throws {
        let text: String
        if file == "-" {
            text = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
        } else {
            guard let d = FileManager.default.contents(atPath: file) else { throw InputError("cannot read '\(file)'") }
            text = String(decoding: d, as: UTF8.self)
        }
        var requests = [CorrectionRequest]()
        for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)   // CRLF files too
            if trimmed.isEmpty { continue }
            requests.append(try CorrectionJSON.request(String(trimmed), line: i + 1, file: file))
        }
        guard !requests.isEmpty else { throw InputError("\(file): no corrections") }
        let store = data + "/store"
        guard FileManager.default.fileExists(atPath: store) else { throw InputError("no store at '\(store)'") }
        let written: [CorrectionRecord]
        do { written = try StoreCorrections.apply(store: store, requests) } catch {
            throw InputError("\(file): \(error)")
        }
        for (req, r) in zip(requests, written) {
            print("{\"line\":\(req.line),\"number\":\(r.number),\"op\":\"\(r.change.name)\",\"subject\":\(CorrectionJSON.quoted(r.target.subject)),\"known_time\":\(r.knownTime.rawValue),\"hash\":\"\(r.hash.hex)\"}")
        }
    }
}

/// A refusal of bad input, printed as `Error: …` with exit status 1 (no usage text: the input was wrong, not
/// the command line).
struct InputError: Error, CustomStringConvertible {
    let description: String
    init(_ text: String) { description = text }
}

/// The JSON forms of corrections: parsing a line of `tickwire correct`, printing records and versions.
enum CorrectionJSON {
    static func quoted(_ s: String) -> String {
        var out = [UInt8]()
        EventText.appendJSONString(s, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    static func time(_ v: Any?, _ key: String, line: Int, file: String) throws -> Nanos? {
        switch v {
        case nil: return nil
        case let s as String:
            do { return try Nanos(parsing: s) } catch { throw InputError("\(file): line \(line): \(key): \(error)") }
        case let n as NSNumber:
            guard let i = Int64(n.stringValue) else {
                throw InputError("\(file): line \(line): \(key) must be an integer of nanoseconds or an ISO-8601 time")
            }
            return Nanos(i)
        default: throw InputError("\(file): line \(line): \(key) must be a time")
        }
    }

    /// One line of a corrections file as a request. - Throws: an `InputError` naming the file and line.
    static func request(_ text: String, line: Int, file: String) throws -> CorrectionRequest {
        func bad(_ why: String) -> InputError { InputError("\(file): line \(line): \(why)") }
        guard let o = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] else {
            throw bad("not a JSON object")
        }
        let allowed: Set<String> = ["subject", "event_time", "known_time", "trade_id", "ordinal", "op", "kind", "set", "author", "reason"]
        if let extra = o.keys.sorted().first(where: { !allowed.contains($0) }) { throw bad("unknown key '\(extra)'") }
        guard let subject = o["subject"] as? String, !subject.isEmpty else { throw bad("\"subject\" is required") }
        guard let eventTime = try time(o["event_time"], "event_time", line: line, file: file) else { throw bad("\"event_time\" is required") }
        guard let author = o["author"] as? String, !author.isEmpty else { throw bad("\"author\" (who corrects) is required") }
        guard let reason = o["reason"] as? String, !reason.isEmpty else { throw bad("\"reason\" (why) is required") }
        func integer(_ key: String) throws -> Int64? {
            guard let v = o[key] else { return nil }
            guard let n = v as? NSNumber, let i = Int64(n.stringValue) else { throw bad("\(key) must be an integer") }
            return i
        }
        let tradeID = try integer("trade_id").map { UInt64(bitPattern: $0) }
        let ordinal = try integer("ordinal").map { (i: Int64) throws -> UInt32 in
            guard let u = UInt32(exactly: i) else { throw bad("ordinal must be 0 or more") }
            return u
        }
        let set = o["set"]
        guard set == nil || set is [String: Any] else { throw bad("\"set\" must be an object of fields") }
        let lastToken = subject.split(separator: ".").last.map(String.init) ?? ""
        var kind = EventKind(name: lastToken)
        if let k = o["kind"] {
            guard let s = k as? String, let parsed = EventKind(name: s.uppercased()) else { throw bad("kind must be TRADE, QUOTE, STATUS, BUST, BOOK, …") }
            kind = parsed
        }
        let opName = (o["op"] as? String) ?? (set != nil ? "replace" : "")
        let fields = try values(set as? [String: Any] ?? [:], kind: kind, bad: bad)
        let operation: CorrectionRequest.Operation
        switch opName {
        case "replace":
            guard !fields.isEmpty else { throw bad("replace needs \"set\" with at least one field") }
            operation = .replace(fields)
        case "delete":
            guard set == nil else { throw bad("delete takes no \"set\"") }
            operation = .delete
        case "insert":
            guard let kind else { throw bad("insert needs \"kind\" (the subject's last token is no kind)") }
            operation = .insert(kind, fields)
        case "": throw bad("\"op\" is required (replace, delete or insert)")
        default: throw bad("op '\(opName)' must be replace, delete or insert")
        }
        return CorrectionRequest(line: line, subject: subject, eventTime: eventTime,
                                 knownTime: try time(o["known_time"], "known_time", line: line, file: file),
                                 tradeID: tradeID, ordinal: ordinal, operation: operation, author: author, reason: reason)
    }

    /// A request as a line `tickwire correct` reads back (decimal fields as decimal text).
    static func line(_ q: CorrectionRequest) -> String {
        var out = "{\"subject\":\(quoted(q.subject)),\"event_time\":\(q.eventTime.rawValue)"
        if let k = q.knownTime { out += ",\"known_time\":\(k.rawValue)" }
        if let id = q.tradeID { out += ",\"trade_id\":\(id)" }
        if let n = q.ordinal { out += ",\"ordinal\":\(n)" }
        func set(_ fields: [String: Int64]) -> String {
            ",\"set\":{" + fields.sorted { $0.key < $1.key }.map { key, v in
                "\(quoted(key)):" + (decimalFields.contains(key) ? quoted(FixedPoint.format(e8: v)) : String(v))
            }.joined(separator: ",") + "}"
        }
        switch q.operation {
        case .delete: out += ",\"op\":\"delete\""
        case .replace(let fields): out += ",\"op\":\"replace\"" + set(fields)
        case .insert(let kind, let fields): out += ",\"op\":\"insert\",\"kind\":\(quoted(kind.name))" + set(fields)
        }
        return out + ",\"author\":\(quoted(q.author)),\"reason\":\(quoted(q.reason))}"
    }

    static let decimalFields: Set<String> = ["price", "size", "bid", "bid_size", "ask", "ask_size", "reference", "upper",
                                             "lower", "value", "threshold", "position", "notional", "pnl"]

    /// Field values as stored words: decimals as e8, sides and states from their names.
    static func values(_ set: [String: Any], kind: EventKind?, bad: (String) -> InputError) throws -> [String: Int64] {
        var out = [String: Int64]()
        for (key, v) in set {
            let text: String
            switch v {
            case let s as String: text = s
            case let n as NSNumber: text = n.stringValue
            default: throw bad("set.\(key) must be a number or a string")
            }
            switch key {
            case "side":
                switch text.lowercased() {
                case "buy", "bid", "1": out[key] = 1
                case "sell", "ask", "2": out[key] = 2
                case "unknown", "0": out[key] = 0
                default: throw bad("set.side '\(text)' must be buy, sell, bid or ask")
                }
            case "state" where kind == .status:
                guard text.utf8.count == 1 else { throw bad("set.state must be one character") }
                out["state"] = Int64(text.utf8.first!)
            case "reason" where kind == .status:
                out["b"] = Int64(bitPattern: Status(category: .other, state: 0, reason: text).reasonPacked)
            case _ where decimalFields.contains(key):
                do { out[key] = try FixedPoint.parseE8(text) } catch { throw bad("set.\(key) '\(text)': \(error.reason)") }
            default:
                guard let i = Int64(text) else { throw bad("set.\(key) '\(text)' must be an integer") }
                out[key] = i
            }
        }
        return out
    }

    static func valuesJSON(_ v: EventValues) -> String {
        var out = [UInt8]()
        EventText.appendJSON(subject: "", subjectSeq: 0, event: Event(subjectID: 0, kind: v.kind, flags: v.flags, source: v.source,
                                                                       eventTime: Nanos(0), knownTime: Nanos(0), a: v.a, b: v.b, c: v.c, d: v.d), to: &out)
        // Keep the kind's own fields: drop the subject, seq and time keys the event renderer puts first.
        let s = String(decoding: out, as: UTF8.self)
        guard let r = s.range(of: "\"known_time\":0") else { return s }
        return "{\"kind\":\"\(v.kind.name)\"" + s[r.upperBound...]
    }
}

/// `tickwire audit verify`'s corrections part: every partition's corrections log, each chain checked.
enum CorrectionsVerify {
    /// - Returns: one JSON line when the store has corrections, and whether every log is whole.
    static func run(data: String) throws -> (line: String?, ok: Bool) {
        let store = data + "/store"
        guard FileManager.default.fileExists(atPath: store) else { return (nil, true) }
        let a = try StoreCorrections.verify(store: store)
        guard !a.logs.isEmpty else { return (nil, true) }
        var line = "{\"corrections\":{\"ok\":\(a.ok),\"logs\":\(a.logs.count),\"records\":\(a.records),\"heads\":{"
        line += a.logs.map { "\(CorrectionJSON.quoted(String($0.path.dropFirst(store.count + 1)))):\"\($0.headHash.hex)\"" }.joined(separator: ",")
        line += "}"
        if let d = a.firstDamage {
            line += ",\"corrupt\":{\"path\":\(CorrectionJSON.quoted(d.path)),\"offset\":\(d.offset),\"reason\":\(CorrectionJSON.quoted(d.reason))}"
        }
        return (line + "}}", a.ok)
    }
}
