import TickwireCore

/// Why a CSV row was refused: the file, the 1-based line, the field, and what was expected.
public struct CSVError: Error, Equatable, Sendable, CustomStringConvertible {
    public let path: String
    public let line: Int
    public let field: String
    public let reason: String
    public init(path: String, line: Int, field: String, reason: String) {
        self.path = path; self.line = line; self.field = field; self.reason = reason
    }
    public var description: String { "\(path):\(line): field '\(field)': \(reason)" }
}

/// The rows of a CSV capture (plain comma separation, no quoting: tardis.dev and LOBSTER write none), read from
/// a memory map. Lines are numbered from 1 as an editor shows them.
struct CSVRows {
    let path: String
    let text: Substring

    init(path: String, file: MappedFile) {
        self.path = path
        text = Substring(String(decoding: file.bytes, as: UTF8.self))
    }

    /// Calls `body` with each non-empty line's number and fields; stops early when it returns false.
    ///
    /// Lines end with LF or CRLF (files saved on Windows). Swift's `Character` holds CRLF as *one* grapheme
    /// that is not equal to `"\n"`, so a split on `"\n"` alone sees a CRLF file as a single line: both are
    /// separators here.
    func forEach(_ body: (Int, [Substring]) -> Bool) {
        var number = 0
        for var line in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            number += 1
            if line.last == "\r" { line = line.dropLast() }
            if line.isEmpty { continue }
            if !body(number, line.split(separator: ",", omittingEmptySubsequences: false)) { return }
        }
    }
}

/// Field readers that throw `CSVError` naming the line and field.
struct CSVField {
    let path: String
    let line: Int

    func fail(_ field: String, _ reason: String) -> CSVError { CSVError(path: path, line: line, field: field, reason: reason) }

    func int(_ v: Substring, _ field: String) throws(CSVError) -> Int64 {
        guard let n = Int64(v) else { throw fail(field, "'\(v)' is not an integer") }
        return n
    }

    /// Microseconds since the epoch → nanoseconds, exactly.
    func micros(_ v: Substring, _ field: String) throws(CSVError) -> Nanos {
        let us = try int(v, field)
        let (ns, overflow) = us.multipliedReportingOverflow(by: 1_000)
        if overflow || us < 0 { throw fail(field, "\(us) µs is outside the representable range") }
        return Nanos(ns)
    }

    /// A decimal that must not be negative (a size, an amount), exactly as fixed point e8.
    func nonNegativeDecimal(_ v: Substring, _ field: String, emptyAs: Int64? = nil) throws(CSVError) -> Int64 {
        let n = try decimal(v, field, emptyAs: emptyAs)
        if n < 0 { throw fail(field, "'\(v)' is negative; a size is 0 or more") }
        return n
    }

    /// A decimal exactly as fixed point e8; an empty field is `emptyAs` when given, else an error.
    func decimal(_ v: Substring, _ field: String, emptyAs: Int64? = nil) throws(CSVError) -> Int64 {
        if v.isEmpty, let e = emptyAs { return e }
        do { return try FixedPoint.parseE8(String(v)) } catch { throw fail(field, error.reason) }
    }
}

/// What a CSV source skipped under `on_error = "skip"`, as one line; nil when nothing was.
func csvSkipSummary(_ name: String, _ counts: CSVCounts, first: CSVError?) -> String? {
    guard counts.errors > 0 else { return nil }
    return "\(name): skipped \(counts.errors) of \(counts.rows) rows" + (first.map { "; first: \($0)" } ?? "")
}

/// The shared skeleton of CSV sources: counters, the error policy, the publish cadence.
struct CSVCounts {
    var rows: UInt64 = 0
    var errors: UInt64 = 0
    var events: UInt64 = 0
    var unknownOrders: UInt64 = 0
    func pairs() -> [(name: String, value: UInt64)] {
        [("rows", rows), ("errors", errors), ("events", events), ("unknown_orders", unknownOrders)]
    }
}
