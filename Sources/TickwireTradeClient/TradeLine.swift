import TickwireCore
#if canImport(Glibc)
import Glibc
#endif

/// A trade request that cannot be sent, in words a user can act on ("side 'hold' must be buy or sell").
public struct TradeInputError: Error, Equatable, Sendable, CustomStringConvertible {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

extension TradeRequest {
    /// A request from fields as a user writes them: side `buy`/`b`/`sell`/`s` in any case, quantity and price as
    /// exact decimals of up to 8 fractional digits.
    /// - Throws: `TradeInputError` naming the first field that is wrong.
    public init(desk: String, symbol: String, side: String, qty: String, price: String, id: String) throws(TradeInputError) {
        let s: Side
        switch side.lowercased() {
        case "buy", "b": s = .buy
        case "sell", "s": s = .sell
        default: throw TradeInputError("side '\(side)' must be buy or sell")
        }
        let quantity: Quantity, limit: Price
        do { quantity = try Quantity(parsing: qty) } catch { throw TradeInputError("qty '\(qty)': \(error.reason)") }
        do { limit = try Price(parsing: price) } catch { throw TradeInputError("price '\(price)': \(error.reason)") }
        self.init(desk: desk, symbol: symbol, side: s, quantity: quantity, price: limit, clientOrderID: id)
        if let bad = validationError() { throw TradeInputError(bad.text) }
    }
}

/// A SUBMIT frame ready to send and the client order id it carries.
public struct EncodedTrade: Sendable, Equatable {
    public private(set) var frame: [UInt8]
    /// Where the client order id begins in `frame` (the frame's last field: it runs to the end). Kept as bytes: a
    /// `String` made for each line was two in every hundred of the command's instructions, and its only use is
    /// to be compared with replies' ids.
    private let idStart: Int

    public init(_ request: TradeRequest) {
        frame = TradeWire.encodeRequest(request)
        idStart = frame.count - request.clientOrderID.utf8.count
    }

    init(frame: [UInt8], idStart: Int) { self.frame = frame; self.idStart = idStart }

    public var clientOrderID: String { String(decoding: frame[idStart...], as: UTF8.self) }

    /// Whether `id` is this trade's client order id, compared byte for byte.
    public func hasClientOrderID(_ id: String) -> Bool {
        var id = id
        return id.withUTF8 { b in
            b.count == frame.count - idStart && frame.withUnsafeBufferPointer { f in
                b.isEmpty || memcmp(f.baseAddress! + idStart, b.baseAddress!, b.count) == 0
            }
        }
    }
}

/// One line of a JSON-lines trade file (`tickwire trade submit --file`): a JSON object with `desk`, `symbol`,
/// `side`, `qty`, `price` and `id`, each a string or a number (other keys are ignored), read straight into a
/// SUBMIT frame.
///
/// Strict: anything that is not one JSON object (RFC 8259) with those six scalars is refused, naming the column
/// and what was expected. The fields then mean what `TradeRequest.init(desk:symbol:side:qty:price:id:)` says: a
/// line whose fields are plain (a side spelt out, unsigned decimals, valid tokens) is encoded in place; any other
/// is handed to that initializer, which accepts it or words the error, so both paths agree by construction.
public enum TradeLine {
    /// The SUBMIT frame of one line (without its newline), or nil for a blank line.
    /// - Throws: `TradeInputError` saying what is wrong.
    public static func encode(_ line: UnsafeBufferPointer<UInt8>) throws(TradeInputError) -> EncodedTrade? {
        var scanner = JSONObjectScanner(line)
        scanner.skipSpace()
        if scanner.atEnd { return nil }
        var fields = Fields()
        do { try scanner.object(into: &fields) } catch {
            // A line of Unicode spaces (no-break space, …) was blank before this parser too.
            if String(decoding: line, as: UTF8.self).allSatisfy(\.isWhitespace) { return nil }
            throw error
        }
        return try fields.encode(line)
    }

    /// `encode` on the bytes of `line`.
    public static func encode(_ line: some StringProtocol) throws(TradeInputError) -> EncodedTrade? {
        var text = String(line)
        let r: Result<EncodedTrade?, TradeInputError> = text.withUTF8 { b in
            do throws(TradeInputError) { return .success(try encode(b)) } catch { return .failure(error) }
        }
        return try r.get()
    }

    /// A field's value: where it is in the line, or its bytes when it had escapes or was a number with an exponent.
    struct Value {
        var range: Range<Int>
        var decoded: [UInt8]?
        var count: Int { decoded?.count ?? range.count }
        func text(_ line: UnsafeBufferPointer<UInt8>) -> String {
            decoded.map { String(decoding: $0, as: UTF8.self) } ?? String(decoding: UnsafeBufferPointer(rebasing: line[range]), as: UTF8.self)
        }
        func withBytes<T>(_ line: UnsafeBufferPointer<UInt8>, _ body: (UnsafeBufferPointer<UInt8>) -> T) -> T {
            if let decoded { return decoded.withUnsafeBufferPointer(body) }
            return body(UnsafeBufferPointer(rebasing: line[range]))
        }
    }

    /// The six fields, in the order their absence is reported.
    struct Fields {
        static let names = ["desk", "symbol", "side", "qty", "price", "id"]

        /// The index in `names` of the key `k`, or nil: by its length and first byte, then the rest compared.
        static func field(_ k: UnsafeBufferPointer<UInt8>) -> Int? {
            func rest(_ name: StaticString) -> Bool { memcmp(k.baseAddress!, name.utf8Start, k.count) == 0 }
            switch (k.count, k.first) {
            case (4, UInt8(ascii: "d")): return rest("desk") ? 0 : nil
            case (6, UInt8(ascii: "s")): return rest("symbol") ? 1 : nil
            case (4, UInt8(ascii: "s")): return rest("side") ? 2 : nil
            case (3, UInt8(ascii: "q")): return rest("qty") ? 3 : nil
            case (5, UInt8(ascii: "p")): return rest("price") ? 4 : nil
            case (2, UInt8(ascii: "i")): return rest("id") ? 5 : nil
            default: return nil
            }
        }
        // Inline, not arrays: a line allocates only its frame.
        var values = InlineArray<6, Value?>(repeating: nil)
        /// Fields given as something other than a string or a number (an object, an array, true, false, null).
        var nonScalar = InlineArray<6, Bool>(repeating: false)

        func encode(_ line: UnsafeBufferPointer<UInt8>) throws(TradeInputError) -> EncodedTrade {
            for i in 0..<6 where values[i] == nil || nonScalar[i] {
                throw TradeInputError("missing or non-scalar \"\(Fields.names[i])\"")
            }
            // Every value is there from here on (read in place, not copied out: each copy retains its bytes).
            if let fast = plain(values, line) { return fast }
            let request = try TradeRequest(desk: values[0]!.text(line), symbol: values[1]!.text(line), side: values[2]!.text(line),
                                           qty: values[3]!.text(line), price: values[4]!.text(line), id: values[5]!.text(line))
            return EncodedTrade(request)
        }

        /// The frame of plain fields, built from the line's bytes; nil for anything else (then the slow path decides).
        private func plain(_ v: borrowing InlineArray<6, Value?>, _ line: UnsafeBufferPointer<UInt8>) -> EncodedTrade? {
            guard let side = v[2]!.withBytes(line, Self.side), let qty = v[3]!.withBytes(line, Self.decimalE8), qty > 0,
                  let price = v[4]!.withBytes(line, Self.decimalE8), price > 0,
                  v[0]!.withBytes(line, { Self.isToken($0) }), v[1]!.withBytes(line, { Self.isToken($0) }),
                  v[5]!.withBytes(line, Self.isClientOrderID) else { return nil }
            // One allocation of the frame's exact size, written in place.
            let length = 23 + v[0]!.count + v[1]!.count + v[5]!.count
            let frame = [UInt8](unsafeUninitializedCapacity: length) { out, initialized in
                out[0] = TradeWire.submit; out[1] = TradeWire.version; out[2] = side.rawValue; out[3] = 0
                UnsafeMutableRawBufferPointer(out).storeBytes(of: UInt64(bitPattern: qty).littleEndian, toByteOffset: 4, as: UInt64.self)
                UnsafeMutableRawBufferPointer(out).storeBytes(of: UInt64(bitPattern: price).littleEndian, toByteOffset: 12, as: UInt64.self)
                // Offsets passed along, not a captured `var` (which a closure boxes and checks at every access).
                initialized = Self.putShort(v[5]!, line, out, at: Self.putShort(v[1]!, line, out, at: Self.putShort(v[0]!, line, out, at: 20)))
            }
            return EncodedTrade(frame: frame, idStart: length - v[5]!.count)
        }

        /// Writes a u8-length-prefixed field at `at` and returns the offset after it.
        private static func putShort(_ value: borrowing Value, _ line: UnsafeBufferPointer<UInt8>, _ out: UnsafeMutableBufferPointer<UInt8>,
                                     at: Int) -> Int {
            value.withBytes(line) { b in
                out[at] = UInt8(b.count)
                _ = UnsafeMutableBufferPointer(rebasing: out[at + 1..<at + 1 + b.count]).initialize(from: b)
                return at + 1 + b.count
            }
        }

        private static func side(_ b: UnsafeBufferPointer<UInt8>) -> Side? {
            // ASCII lower case: | 0x20 maps A-Z onto a-z and leaves a-z alone.
            switch b.count {
            case 1: return b[0] | 0x20 == UInt8(ascii: "b") ? .buy : b[0] | 0x20 == UInt8(ascii: "s") ? .sell : nil
            case 3: return b[0] | 0x20 == UInt8(ascii: "b") && b[1] | 0x20 == UInt8(ascii: "u") && b[2] | 0x20 == UInt8(ascii: "y") ? .buy : nil
            case 4:
                return b[0] | 0x20 == UInt8(ascii: "s") && b[1] | 0x20 == UInt8(ascii: "e") && b[2] | 0x20 == UInt8(ascii: "l")
                    && b[3] | 0x20 == UInt8(ascii: "l") ? .sell : nil
            default: return nil
            }
        }

        /// A decimal that takes the fast path (`FixedPoint.parseE8(bytes:)`: at most 10 whole digits, so no
        /// overflow); longer ones, and signs, go the slow way, which says what is wrong with them.
        private static func decimalE8(_ b: UnsafeBufferPointer<UInt8>) -> Int64? {
            FixedPoint.parseE8(bytes: UnsafeRawBufferPointer(b))
        }

        private static func isToken(_ b: UnsafeBufferPointer<UInt8>) -> Bool {
            !b.isEmpty && b.count <= TradeWire.maxToken && b.allSatisfy {
                ($0 &- 0x30 < 10) || ($0 | 0x20) &- 0x61 < 26 || $0 == 0x5f || $0 == 0x2d
            }
        }

        private static func isClientOrderID(_ b: UnsafeBufferPointer<UInt8>) -> Bool {
            !b.isEmpty && b.count <= TradeWire.maxClientOrderID && b.allSatisfy { $0 > 0x20 && $0 < 0x7f && $0 != 0x22 && $0 != 0x5c }
        }
    }
}

/// A strict reader of one JSON object (RFC 8259) on one line, keeping the six trade fields and skipping the rest.
struct JSONObjectScanner {
    let b: UnsafeBufferPointer<UInt8>
    var i = 0
    init(_ b: UnsafeBufferPointer<UInt8>) { self.b = b }

    var atEnd: Bool { i >= b.count }

    func fail(_ expected: String) -> TradeInputError {
        let found = atEnd ? "the end of the line" : b[i] < 0x20 || b[i] >= 0x7f ? "byte 0x\(String(b[i], radix: 16))" : "'\(Character(Unicode.Scalar(b[i])))'"
        return TradeInputError("not a JSON object: column \(i + 1): expected \(expected), found \(found)")
    }

    mutating func skipSpace() {
        while i < b.count, b[i] == 0x20 || b[i] == 0x09 || b[i] == 0x0d || b[i] == 0x0a { i += 1 }
    }

    mutating func expect(_ c: UInt8, _ what: String) throws(TradeInputError) {
        guard i < b.count, b[i] == c else { throw fail(what) }
        i += 1
    }

    /// The whole line: one object, then only white space.
    mutating func object(into fields: inout TradeLine.Fields) throws(TradeInputError) {
        try expect(UInt8(ascii: "{"), "'{'")
        skipSpace()
        if i < b.count, b[i] == UInt8(ascii: "}") {
            i += 1
        } else {
            while true {
                skipSpace()
                let field: Int?
                if let known = knownKey() { field = known } else { field = try string().withBytes(b, TradeLine.Fields.field) }
                skipSpace()
                try expect(UInt8(ascii: ":"), "':' after a key")
                skipSpace()
                if let field {
                    // A repeated key: the last one counts.
                    fields.nonScalar[field] = false
                    if i < b.count, b[i] == UInt8(ascii: "\"") {
                        fields.values[field] = try string()
                    } else if i < b.count, b[i] == UInt8(ascii: "-") || b[i] &- UInt8(ascii: "0") < 10 {
                        fields.values[field] = try number()
                    } else {
                        try skipValue(depth: 0)
                        fields.nonScalar[field] = true
                    }
                } else {
                    try skipValue(depth: 0)
                }
                skipSpace()
                if i < b.count, b[i] == UInt8(ascii: ",") { i += 1; continue }
                try expect(UInt8(ascii: "}"), "',' or '}'")
                break
            }
        }
        skipSpace()
        guard atEnd else { throw fail("the end of the line after the object") }
    }

    /// The six names with their quotes, as the little-endian word of their bytes (from the opening quote's next one)
    /// and the mask of those bytes.
    private static let keyWords: [(word: UInt64, mask: UInt64)] = TradeLine.Fields.names.map { name in
        let bytes = Array(name.utf8) + [UInt8(ascii: "\"")]
        var word: UInt64 = 0
        for (k, c) in bytes.enumerated() { word |= UInt64(c) << (8 * k) }
        return (word, bytes.count == 8 ? ~0 : (1 << (8 * bytes.count)) - 1)
    }

    /// The field of the key at `i` when it is one of the six names written plainly (no escapes), read with one
    /// eight-byte load and moved past; nil, not moving, for any other key (which `string` then reads).
    private mutating func knownKey() -> Int? {
        guard i + 9 <= b.count, b[i] == UInt8(ascii: "\""), let p = b.baseAddress else { return nil }
        let w = UInt64(littleEndian: UnsafeRawPointer(p + i + 1).loadUnaligned(as: UInt64.self))
        let field: Int
        switch UInt8(truncatingIfNeeded: w) {
        case UInt8(ascii: "d"): field = 0
        case UInt8(ascii: "s"): field = UInt8(truncatingIfNeeded: w >> 8) == UInt8(ascii: "y") ? 1 : 2
        case UInt8(ascii: "q"): field = 3
        case UInt8(ascii: "p"): field = 4
        case UInt8(ascii: "i"): field = 5
        default: return nil
        }
        let key = Self.keyWords[field]
        guard w & key.mask == key.word else { return nil }
        i += 1 + key.mask.nonzeroBitCount / 8
        return field
    }

    /// A string at `i`: its range inside the quotes, and its decoded bytes when it has escapes.
    mutating func string() throws(TradeInputError) -> TradeLine.Value {
        try expect(UInt8(ascii: "\""), "a string")
        let start = i
        // Plain ASCII up to the closing quote, the common case, in one tight pass: a quote, a backslash, a control
        // byte or a non-ASCII byte ends it (`c &- 0x20 >= 0x60` is below 0x20 or 0x80 and above).
        if let p = b.baseAddress {
            var j = i
            // Eight bytes at a time while eight are left: the lowest byte flagged is the first that is a quote, a
            // backslash, below 0x20 or above 0x7f. (Each test flags its true matches exactly; its false ones come
            // only above a true one, from the borrow, so the lowest flag of all is exact.)
            let ones: UInt64 = 0x0101_0101_0101_0101, highs = ones &* 0x80
            while j + 8 <= b.count {
                let w = UInt64(littleEndian: UnsafeRawPointer(p + j).loadUnaligned(as: UInt64.self))
                let quote = w ^ (ones &* 0x22), backslash = w ^ (ones &* 0x5c)
                let flags = ((quote &- ones) & ~quote | (backslash &- ones) & ~backslash | (w &- ones &* 0x20) & ~w | w) & highs
                if flags == 0 { j += 8; continue }
                j += flags.trailingZeroBitCount >> 3
                if p[j] == UInt8(ascii: "\"") {
                    i = j + 1
                    return TradeLine.Value(range: start..<j, decoded: nil)
                }
                j = b.count + 1   // the careful way below
            }
            while j < b.count {
                let c = p[j]
                if c == UInt8(ascii: "\"") {
                    i = j + 1
                    return TradeLine.Value(range: start..<j, decoded: nil)
                }
                if c == UInt8(ascii: "\\") || c &- 0x20 >= 0x60 { break }
                j += 1
            }
        }
        // Escapes, control bytes, non-ASCII text or no closing quote: byte by byte, naming what is wrong.
        var decoded: [UInt8]? = nil
        var nonASCII = false
        while true {
            guard i < b.count else { throw fail("the closing '\"' of a string") }
            let c = b[i]
            if c == UInt8(ascii: "\"") { break }
            if c < 0x20 { throw fail("a character (control characters must be escaped)") }
            if c >= 0x80 { nonASCII = true }
            if c == UInt8(ascii: "\\") {
                if decoded == nil { decoded = Array(b[start..<i]) }
                i += 1
                guard i < b.count else { throw fail("an escape") }
                switch b[i] {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): decoded!.append(b[i])
                case UInt8(ascii: "b"): decoded!.append(0x08)
                case UInt8(ascii: "f"): decoded!.append(0x0c)
                case UInt8(ascii: "n"): decoded!.append(0x0a)
                case UInt8(ascii: "r"): decoded!.append(0x0d)
                case UInt8(ascii: "t"): decoded!.append(0x09)
                case UInt8(ascii: "u"):
                    i += 1
                    var scalar = try hex4()
                    if scalar >= 0xd800 && scalar < 0xdc00 {
                        guard i + 1 < b.count, b[i] == UInt8(ascii: "\\"), b[i + 1] == UInt8(ascii: "u") else {
                            throw fail("'\\u' and the low half of a surrogate pair")
                        }
                        i += 2
                        let low = try hex4()
                        guard low >= 0xdc00 && low < 0xe000 else { throw fail("the low half of a surrogate pair") }
                        scalar = 0x10000 + ((scalar - 0xd800) << 10) + (low - 0xdc00)
                    } else if scalar >= 0xdc00 && scalar < 0xe000 {
                        throw fail("a character, not the low half of a surrogate pair alone")
                    }
                    decoded!.append(contentsOf: String(Character(Unicode.Scalar(scalar)!)).utf8)
                    continue
                default: throw fail("an escape (one of \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)")
                }
                i += 1
                continue
            }
            decoded?.append(c)
            i += 1
        }
        let range = start..<i
        i += 1
        if nonASCII && String(validating: UnsafeBufferPointer(rebasing: b[range]), as: UTF8.self) == nil {
            i = start
            throw fail("UTF-8 text")
        }
        return TradeLine.Value(range: range, decoded: decoded)
    }

    private mutating func hex4() throws(TradeInputError) -> UInt32 {
        var v: UInt32 = 0
        for _ in 0..<4 {
            guard i < b.count else { throw fail("four hex digits") }
            let c = b[i] | 0x20
            let d: UInt8
            if c &- UInt8(ascii: "0") < 10 { d = c &- UInt8(ascii: "0") } else if c &- UInt8(ascii: "a") < 6 { d = c &- UInt8(ascii: "a") &+ 10 } else {
                throw fail("four hex digits")
            }
            v = v << 4 | UInt32(d)
            i += 1
        }
        return v
    }

    /// A number at `i` (RFC 8259's grammar): its text, with an exponent applied (`1.5e2` reads as `150`), so
    /// that it means the exact decimal written.
    mutating func number() throws(TradeInputError) -> TradeLine.Value {
        let start = i
        if b[i] == UInt8(ascii: "-") { i += 1 }
        func digits() -> Int { let s = i; while i < b.count, b[i] &- UInt8(ascii: "0") < 10 { i += 1 }; return i - s }
        let intStart = i
        let intDigits = digits()
        guard intDigits > 0 else { throw fail("a digit") }
        if intDigits > 1 && b[intStart] == UInt8(ascii: "0") { i = intStart + 1; throw fail("no leading zero") }
        var fracRange = i..<i
        if i < b.count, b[i] == UInt8(ascii: ".") {
            i += 1
            let s = i
            guard digits() > 0 else { throw fail("a digit after '.'") }
            fracRange = s..<i
        }
        guard i < b.count, b[i] | 0x20 == UInt8(ascii: "e") else { return TradeLine.Value(range: start..<i, decoded: nil) }
        i += 1
        var negativeExponent = false
        if i < b.count, b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") { negativeExponent = b[i] == UInt8(ascii: "-"); i += 1 }
        let expStart = i
        guard digits() > 0 else { throw fail("a digit in the exponent") }
        // An exponent this large makes a number no quantity or price can be (the decimal parser says too large or
        // too fine); the cap only keeps the text it reads short.
        var exponent = 0
        for c in b[expStart..<i] { exponent = min(exponent * 10 + Int(c - UInt8(ascii: "0")), 10_000) }
        if negativeExponent { exponent = -exponent }
        // Digits without the point (leading zeros dropped), and where the point goes after shifting by the exponent.
        var mantissa = Array(b[intStart..<intStart + intDigits]) + Array(b[fracRange])
        var point = intDigits + exponent
        while mantissa.first == UInt8(ascii: "0") { mantissa.removeFirst(); point -= 1 }
        if mantissa.isEmpty { return TradeLine.Value(range: start..<i, decoded: Array("0".utf8)) }
        var text: [UInt8] = b[start] == UInt8(ascii: "-") ? [UInt8(ascii: "-")] : []
        if point <= 0 {
            text.append(contentsOf: "0.".utf8)
            text.append(contentsOf: repeatElement(UInt8(ascii: "0"), count: -point))
            text.append(contentsOf: mantissa)
        } else if point >= mantissa.count {
            text.append(contentsOf: mantissa)
            text.append(contentsOf: repeatElement(UInt8(ascii: "0"), count: point - mantissa.count))
        } else {
            text.append(contentsOf: mantissa[..<point])
            text.append(UInt8(ascii: "."))
            text.append(contentsOf: mantissa[point...])
        }
        return TradeLine.Value(range: start..<i, decoded: text)
    }

    /// Skips any JSON value (objects and arrays nested up to 64 deep).
    mutating func skipValue(depth: Int) throws(TradeInputError) {
        guard i < b.count else { throw fail("a value") }
        guard depth < 64 else { throw fail("a value nested less than 64 deep") }
        switch b[i] {
        case UInt8(ascii: "\""): _ = try string()
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): _ = try number()
        case UInt8(ascii: "t"): try literal("true")
        case UInt8(ascii: "f"): try literal("false")
        case UInt8(ascii: "n"): try literal("null")
        case UInt8(ascii: "["), UInt8(ascii: "{"):
            let isObject = b[i] == UInt8(ascii: "{")
            let close = isObject ? UInt8(ascii: "}") : UInt8(ascii: "]")
            i += 1
            skipSpace()
            if i < b.count, b[i] == close { i += 1; return }
            while true {
                skipSpace()
                if isObject {
                    _ = try string()
                    skipSpace()
                    try expect(UInt8(ascii: ":"), "':' after a key")
                    skipSpace()
                }
                try skipValue(depth: depth + 1)
                skipSpace()
                if i < b.count, b[i] == UInt8(ascii: ",") { i += 1; continue }
                try expect(close, isObject ? "',' or '}'" : "',' or ']'")
                return
            }
        default: throw fail("a value")
        }
    }

    private mutating func literal(_ word: StaticString) throws(TradeInputError) {
        let n = word.utf8CodeUnitCount
        guard i + n <= b.count, UnsafeBufferPointer(start: word.utf8Start, count: n).elementsEqual(b[i..<i + n]) else {
            throw fail("a value")
        }
        i += n
    }
}
