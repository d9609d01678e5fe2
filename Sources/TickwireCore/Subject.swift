/// Why a subject or a pattern was refused; the message names the token and the rule it broke.
public struct SubjectError: Error, Equatable, CustomStringConvertible, Sendable {
    public let input: String
    public let reason: String
    public var description: String { "invalid subject '\(input)': \(reason)" }
}

@usableFromInline
enum SubjectGrammar {
    static let maxTokens = 16
    static let maxBytes = 255

    @inlinable
    static func isTokenByte(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "-"):
            return true
        default:
            return false
        }
    }

    /// Splits and checks the common rules; `allowWildcards` admits `*` tokens and a final `>`.
    static func tokens(_ text: String, allowWildcards: Bool) throws(SubjectError) -> [Substring] {
        func fail(_ reason: String) -> SubjectError { SubjectError(input: text, reason: reason) }
        if text.isEmpty { throw fail("it is empty") }
        if text.utf8.count > maxBytes { throw fail("it is \(text.utf8.count) bytes long; at most \(maxBytes) are allowed") }
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        if parts.count > maxTokens { throw fail("it has \(parts.count) tokens; at most \(maxTokens) are allowed") }
        for (i, token) in parts.enumerated() {
            if token.isEmpty { throw fail("token \(i + 1) is empty (two dots in a row, or a leading or trailing dot)") }
            if token == "*" || token == ">" {
                if !allowWildcards { throw fail("token \(i + 1) is the wildcard '\(token)'; a published subject never holds one") }
                if token == ">" && i != parts.count - 1 { throw fail("'>' must be the last token, but token \(i + 1) is '>'") }
                continue
            }
            for b in token.utf8 where !isTokenByte(b) {
                let shown = b >= 0x20 && b < 0x7f ? "'\(Character(Unicode.Scalar(b)))'" : "byte 0x\(String(b, radix: 16))"
                throw fail("token \(i + 1) '\(token)' holds \(shown); tokens are made of A-Z a-z 0-9 _ -")
            }
        }
        return parts
    }
}

/// A published subject: dot-separated tokens of `[A-Za-z0-9_-]`, at most 16 tokens and 255 bytes,
/// never a wildcard. `MD.XNAS.AAPL.TRADE`, `TRADE.DESK7.AAPL`.
public struct Subject: Hashable, Sendable, CustomStringConvertible, Comparable {
    public let text: String

    /// - Throws: `SubjectError` naming the rule the text breaks.
    public init(_ text: String) throws(SubjectError) {
        _ = try SubjectGrammar.tokens(text, allowWildcards: false)
        self.text = text
    }

    /// For subjects built from parts already known valid (a checked venue and symbol).
    public init(unchecked text: String) { self.text = text }

    public var tokens: [Substring] { text.split(separator: ".", omittingEmptySubsequences: false) }
    public var description: String { text }
    public static func < (a: Subject, b: Subject) -> Bool { a.text < b.text }

    /// `MD.<VENUE>.<SYMBOL>.<KIND>`, with venue and symbol sanitised to the token alphabet
    /// (anything else becomes `_`), so a feed's symbol like `BRK.A` becomes `BRK_A`.
    public static func marketData(venue: String, symbol: String, kind: EventKind) -> Subject {
        Subject(unchecked: "MD.\(sanitizeToken(venue)).\(sanitizeToken(symbol)).\(kind.name)")
    }

    /// Maps arbitrary text to one valid token: invalid bytes become `_`, empty becomes `_`.
    public static func sanitizeToken(_ raw: some StringProtocol) -> String {
        let trimmed = raw.trimmingSpaces()
        if trimmed.isEmpty { return "_" }
        var bytes = [UInt8]()
        bytes.reserveCapacity(trimmed.utf8.count)
        for b in trimmed.utf8 { bytes.append(SubjectGrammar.isTokenByte(b) ? b : UInt8(ascii: "_")) }
        return String(decoding: bytes.prefix(64), as: UTF8.self)
    }
}

extension StringProtocol {
    func trimmingSpaces() -> Substring {
        let s = Substring(self)
        guard let first = s.firstIndex(where: { $0 != " " }) else { return "" }
        let last = s.lastIndex(where: { $0 != " " })!
        return s[first...last]
    }
}

/// A subscription pattern: `*` matches exactly one token, `>` matches one or more trailing tokens and
/// stands last (the grammar of NATS and TIBCO Rendezvous).
public struct SubjectPattern: Hashable, Sendable, CustomStringConvertible {
    public enum Token: Hashable, Sendable {
        case literal(String)
        case one        // *
        case rest       // >
    }

    public let text: String
    public let tokens: [Token]

    /// - Throws: `SubjectError` naming the rule the text breaks.
    public init(_ text: String) throws(SubjectError) {
        let parts = try SubjectGrammar.tokens(text, allowWildcards: true)
        self.text = text
        self.tokens = parts.map { $0 == "*" ? .one : $0 == ">" ? .rest : .literal(String($0)) }
    }

    public var description: String { text }

    /// True when the pattern holds no wildcard.
    public var isLiteral: Bool { !tokens.contains { if case .literal = $0 { false } else { true } } }

    /// The longest literal byte prefix every matching subject starts with: what a ZeroMQ SUB socket can
    /// filter on at the publisher (`MD.XNAS.*.TRADE` -> `MD.XNAS.`; `MD.>` -> `MD.`; `>` -> empty).
    public var zmqPrefix: String {
        var prefix = ""
        for (i, token) in tokens.enumerated() {
            guard case .literal(let s) = token else { return prefix }
            prefix += s
            prefix += i == tokens.count - 1 ? "" : "."
        }
        return prefix
    }

    /// Whether `subject` matches. - Complexity: O(tokens).
    public func matches(_ subject: Subject) -> Bool { matches(subjectText: subject.text) }

    /// Whether the subject text (assumed valid) matches.
    public func matches(subjectText: String) -> Bool {
        var it = subjectText.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false).makeIterator()
        for token in tokens {
            switch token {
            case .rest:
                return it.next() != nil
            case .one:
                if it.next() == nil { return false }
            case .literal(let lit):
                guard let part = it.next(), part.elementsEqual(lit.utf8) else { return false }
            }
        }
        return it.next() == nil
    }
}
