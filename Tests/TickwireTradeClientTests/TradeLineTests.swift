import Foundation
import Testing
import TickwireCore
import TickwireTradeClient

/// `tickwire trade submit --file`'s reader: each line a JSON object with the six fields, straight into a SUBMIT
/// frame; every malformed line refused with what is wrong.
@Suite(.timeLimit(.minutes(5))) struct TradeLineTests {
    func encode(_ line: String) throws(TradeInputError) -> EncodedTrade? { try TradeLine.encode(line) }

    func error(_ line: String) -> String {
        do throws(TradeInputError) { return "accepted: \(String(describing: try encode(line)))" } catch { return error.reason }
    }

    @Test func aPlainLineIsTheFrameOfItsRequest() throws {
        let line = #"{"desk":"DESK7","symbol":"AAPL","side":"buy","qty":100,"price":"199.95","id":"ord-1"}"#
        let expected = TradeRequest(desk: "DESK7", symbol: "AAPL", side: .buy, quantity: Quantity(e8: 100 * FixedPoint.scale),
                                    price: Price(e8: 19_995_000_000), clientOrderID: "ord-1")
        let t = try #require(try encode(line))
        #expect(t.frame == TradeWire.encodeRequest(expected))
        #expect(t.clientOrderID == "ord-1")
        #expect(try TradeWire.decodeRequest(t.frame) == expected)
    }

    @Test(arguments: [
        // Numbers and strings alike, exponents applied exactly, keys in any order, white space anywhere, other keys
        // (of any JSON value) ignored, escapes decoded, a repeated key's last value, side in any case.
        (#"{"id":"a","price":199.95,"qty":"1","side":"SELL","symbol":"AAPL","desk":"D"}"#, "D", "AAPL", Side.sell, "1", "199.95", "a"),
        (#" { "desk" : "D" , "symbol":"AAPL","side":"s","qty":1.5e2,"price":2E-1,"id":"a" } "# + "\r", "D", "AAPL", .sell, "150", "0.2", "a"),
        (#"{"desk":"D","note":{"x":[1,2.5,"}",true,false,null,{}]},"symbol":"AAPL","side":"b","qty":1,"price":1,"id":"a"}"#, "D", "AAPL", .buy, "1", "1", "a"),
        (#"{"d\u0065sk":"D\u005f1","symbol":"AAPL","side":"Buy","qty":"0.00000001","price":"1","id":"\u00e9"}"#, "D_1", "AAPL", .buy, "0.00000001", "1", "é"),
        (#"{"desk":"X","desk":"D","symbol":"AAPL","side":"buy","qty":1,"price":1,"id":"a\/b"}"#, "D", "AAPL", .buy, "1", "1", "a/b"),
        (#"{"desk":"D","symbol":"AAPL","side":"buy","qty":-0.5e1,"price":12345678901.5,"id":"a"}"#, "D", "AAPL", .buy, "-5", "12345678901.5", "a"),
        // Keys one letter off a field's name, of its length and first letter, are other keys.
        (#"{"desk":"D","sidx":"sell","symbol":"AAPL","dusk":"E","side":"buy","qtx":9,"qty":1,"price":1,"i":"b","id":"a"}"#, "D", "AAPL", .buy, "1", "1", "a"),
        // Keys that begin with a field's name (read eight bytes at a time), and one at the line's very end.
        (#"{"desk":"D","desks":"E","symbol":"AAPL","symbols":"X","side":"buy","sides":"sell","qty":1,"qty2":9,"price":1,"prices":3,"id":"a","idx":"b"}"#,
         "D", "AAPL", .buy, "1", "1", "a"),
        (#"{"symbol":"AAPL","side":"buy","qty":1,"price":1,"desk":"D","id":"a","id":"a"}"#, "D", "AAPL", .buy, "1", "1", "a"),
    ])
    func fieldsAreReadAsWritten(line: String, desk: String, symbol: String, side: Side, qty: String, price: String, id: String) throws {
        let fields = (try? TradeRequest(desk: desk, symbol: symbol, side: "\(side)", qty: qty, price: price, id: id))
        switch (fields, Result { try encode(line) }) {
        case (let r?, .success(let t?)): #expect(t.frame == TradeWire.encodeRequest(r) && t.clientOrderID == id)
        case (nil, .failure(let e as TradeInputError)):
            // The same fields as flags are refused with the same words.
            #expect(throws: e) { try TradeRequest(desk: desk, symbol: symbol, side: "\(side)", qty: qty, price: price, id: id) }
        case (let r, let t): Issue.record("\(line): fields \(String(describing: r)), line \(t)")
        }
    }

    @Test(arguments: ["", "   ", "\t\r", "\u{a0}\u{2028}"]) func blankLinesAreSkipped(line: String) throws {
        #expect(try encode(line) == nil)
    }

    @Test(arguments: [
        (#"{"desk":"DESK7","symbol":"AAPL"}"#, #"missing or non-scalar "side""#),
        (#"{"desk":"D","symbol":"AAPL","side":"buy","qty":true,"price":1,"id":"a"}"#, #"missing or non-scalar "qty""#),
        (#"{"desk":"D","symbol":"AAPL","side":"buy","qty":1,"price":[1],"id":"a"}"#, #"missing or non-scalar "price""#),
        (#"{"desk":"D","symbol":"AAPL","side":"buy","qty":1,"price":1,"id":null}"#, #"missing or non-scalar "id""#),
        (#"{"desk":"D","symbol":"AAPL","side":"hold","qty":1,"price":1,"id":"a"}"#, "side 'hold' must be buy or sell"),
        (#"{"desk":"D","symbol":"AAPL","side":"buy","qty":"-5","price":1,"id":"a"}"#, "quantity must be positive, got -5"),
        (#"{"desk":"D","symbol":"AAPL","side":"buy","qty":0,"price":1,"id":"a"}"#, "quantity must be positive, got 0"),
        (#"{"desk":"D","symbol":"AAPL","side":"buy","qty":1.123456789,"price":1,"id":"a"}"#, "qty '1.123456789': more than 8 fractional digits"),
        (#"{"desk":"D","symbol":"AAPL","side":"buy","qty":1,"price":"1,5","id":"a"}"#, "price '1,5': ',' is not a digit"),
        (#"{"desk":"D","symbol":"AAPL","side":"buy","qty":1,"price":"99999999999","id":"a"}"#, "price '99999999999': it is too large"),
        (#"{"desk":"D.1","symbol":"AAPL","side":"buy","qty":1,"price":1,"id":"a"}"#, "desk 'D.1' must be 1-32 characters of [A-Za-z0-9_-]"),
        (#"{"desk":"D","symbol":"","side":"buy","qty":1,"price":1,"id":"a"}"#, "symbol '' must be 1-32 characters"),
        (#"{"desk":"D","symbol":"AAPL","side":"buy","qty":1,"price":1,"id":"a b"}"#, "client order id must be 1-64 printable ASCII"),
        ("[1]", "not a JSON object: column 1: expected '{', found '['"),
        (#"{"desk":"D",}"#, "not a JSON object: column 13: expected a string, found '}'"),
        (#"{"desk" "D"}"#, "not a JSON object: column 9: expected ':' after a key, found '\"'"),
        (#"{"desk":"D"} x"#, "not a JSON object: column 14: expected the end of the line after the object, found 'x'"),
        (#"{"desk":"D"#, "not a JSON object: column 11: expected the closing '\"' of a string, found the end of the line"),
        (#"{"desk":01}"#, "not a JSON object: column 10: expected no leading zero"),
        (#"{"desk":1.}"#, "not a JSON object: column 11: expected a digit after '.'"),
        (#"{"desk":tru}"#, "not a JSON object: column 9: expected a value"),
        (#"{"desk":"\x"}"#, "not a JSON object: column 11: expected an escape"),
        (#"{"desk":"\ud800"}"#, "low half of a surrogate pair"),
        ("{\"desk\":\"a\tb\"}", "not a JSON object: column 11: expected a character (control characters must be escaped), found byte 0x9"),
        (#"{"desk":"D","symbol":"AAPL","side":"buy","qty":1,"price":1,"id":"a"}{}"#, "expected the end of the line after the object"),
        (#"{"a":["# + String(repeating: "[", count: 70), "nested less than 64 deep"),
    ])
    func malformedLinesAreRefusedSayingWhatIsWrong(line: String, expected: String) {
        let said = error(line)
        #expect(said.contains(expected), "\(line): \(said)")
    }

    @Test func invalidUTF8IsRefused() {
        let bytes: [UInt8] = Array(#"{"desk":"D"#.utf8) + [0xff] + Array(#""}"#.utf8)
        let said: String = bytes.withUnsafeBufferPointer { b in
            do throws(TradeInputError) { return "accepted: \(String(describing: try TradeLine.encode(b)))" } catch { return error.reason }
        }
        #expect(said.contains("expected UTF-8 text"), "\(said)")
    }

    /// Random lines of plain and tricky field values: the reader agrees with the fields read by Foundation's JSON
    /// parser and checked by `TradeRequest.init(desk:symbol:side:qty:price:id:)` — the command's reader before this
    /// one — on what it accepts, the frame it makes and the words of each refusal.
    @Test func randomLinesAgreeWithFoundationsParser() throws {
        let seed = ProcessInfo.processInfo.environment["TICKWIRE_TEST_SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 0...UInt64.max)
        var state = seed
        func next(_ n: Int) -> Int {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return Int((z ^ (z >> 31)) % UInt64(n))
        }
        let tokens = ["D", "DESK_7", "a-b", "", "D.1", String(repeating: "x", count: 32), String(repeating: "x", count: 33), "é"]
        let sides = ["buy", "sell", "B", "s", "Sell", "hold", "", "buyy"]
        let numbers = ["1", "0", "100", "0.5", "199.95", "1.00000001", "1.123456789", "-5", "+5", "1.", ".5", "abc", "12345678901",
                       "99999999999", "1.2.3", "00.1", "0.000000001", ""]
        let ids = ["a", "ord-1", "a b", "", "x\"y", String(repeating: "i", count: 64), String(repeating: "i", count: 65), "~!@#$%^&*()"]
        for round in 0..<2_000 {
            let desk = tokens[next(tokens.count)], symbol = tokens[next(tokens.count)], side = sides[next(sides.count)]
            let qty = numbers[next(numbers.count)], price = numbers[next(numbers.count)], id = ids[next(ids.count)]
            // Whole numbers are sometimes written as JSON numbers (Foundation reads those exactly; decimals it reads
            // as doubles, whose text can differ from what was written, which the rows above cover).
            func value(_ s: String) -> String { next(2) == 0 && !s.isEmpty && s.allSatisfy(\.isNumber) && (s == "0" || s.first != "0") ? s : TradeWire.jsonQuoted(s) }
            var fields = [("desk", TradeWire.jsonQuoted(desk)), ("symbol", TradeWire.jsonQuoted(symbol)), ("side", TradeWire.jsonQuoted(side)),
                          ("qty", value(qty)), ("price", value(price)), ("id", TradeWire.jsonQuoted(id))]
            if next(8) == 0 { fields.remove(at: next(6)) }
            let line = "{" + fields.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
            agreesWithFoundation(line, "seed \(seed) round \(round)")
        }
    }

    /// `line` (valid JSON) reads as Foundation's parser and `TradeRequest` read it: the same frame, or the same error.
    func agreesWithFoundation(_ line: String, _ context: String) {
        let reference: Result<TradeRequest, TradeInputError> = Result {
            let parsed = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            func field(_ key: String) throws(TradeInputError) -> String {
                switch parsed[key] {
                case let s as String: return s
                case let n as NSNumber: return n.stringValue
                default: throw TradeInputError("missing or non-scalar \"\(key)\"")
                }
            }
            return try TradeRequest(desk: field("desk"), symbol: field("symbol"), side: field("side"), qty: field("qty"),
                                    price: field("price"), id: field("id"))
        }.mapError { $0 as! TradeInputError }
        let read = Result { () throws(TradeInputError) in try TradeLine.encode(line) }
        switch (reference, read) {
        case (.success(let r), .success(let t?)):
            #expect(t.frame == TradeWire.encodeRequest(r) && t.clientOrderID == r.clientOrderID, "\(context): \(line)")
        case (.failure(let a), .failure(let b)):
            #expect(a == b, "\(context): \(line)")
        default:
            Issue.record("\(context): \(line): Foundation \(reference), TradeLine \(read)")
        }
    }

    /// Strings are scanned eight bytes at a time: a byte that ends the plain scan (a quote, a backslash, a control
    /// byte, a non-ASCII one), or a string's end, at every place in and around the eight-byte words reads as
    /// Foundation reads it; a raw control byte anywhere is refused at its column.
    @Test func everyPlaceInAWordOfAStringReadsTheSame() {
        let specials = [#"\""#, #"\\"#, #"\/"#, #"\u0041"#, #"\n"#, "é", "\u{7f}", "~"]
        for length in 0...26 {
            for at in 0...length {
                for special in specials {
                    let id = String(repeating: "i", count: at) + (at < length ? special + String(repeating: "j", count: length - at - 1) : "")
                    agreesWithFoundation(#"{"desk":"D","symbol":"AAPL","side":"buy","qty":1,"price":"2","id":"\#(id)"}"#, "id \(id)")
                    agreesWithFoundation(#"{"id":"\#(id)","desk":"D","symbol":"AAPL","side":"buy","qty":1,"price":"2"}"#, "id first \(id)")
                }
                guard at < length else { continue }
                let raw = String(repeating: "i", count: at) + "\u{01}" + String(repeating: "j", count: length - at - 1)
                let line = #"{"id":""# + raw + #"","desk":"D","symbol":"AAPL","side":"buy","qty":1,"price":"2"}"#
                #expect(error(line) == "not a JSON object: column \(8 + at): expected a character (control characters must be escaped), found byte 0x1", "\(at)")
            }
            // No closing quote: the line ends inside the string.
            #expect(error(#"{"id":""# + String(repeating: "i", count: length)).hasSuffix("expected the closing '\"' of a string, found the end of the line"))
        }
    }
}

/// The file is read in blocks: lines that straddle a block, a line longer than a block, and a last line without
/// a newline all come out whole, numbered as in the file.
@Suite(.timeLimit(.minutes(5))) struct TradeFileTests {
    func lines(of text: [UInt8]) throws -> [(String, Int)] {
        let path = NSTemporaryDirectory() + "tradefile-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        #expect(FileManager.default.createFile(atPath: path, contents: Data(text)))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let fd = open(path, O_RDONLY)
        defer { close(fd) }
        var out: [(String, Int)] = []
        try TradeFile.forEachLine(fd: fd) { line, n in out.append((String(decoding: line, as: UTF8.self), n)) }
        return out
    }

    @Test func linesComeOutWholeAcrossBlocks() throws {
        var expected: [String] = []
        var text: [UInt8] = []
        var n = 0
        // Enough lines of varying length to cross several block boundaries at different offsets.
        while text.count < 3 * TradeFile.blockBytes {
            let line = String(repeating: "x", count: n % 97) + "#\(n)"
            expected.append(line)
            text += Array(line.utf8) + [0x0a]
            n += 1
        }
        let long = String(repeating: "L", count: 2 * TradeFile.blockBytes + 17)
        expected += ["", long, "last"]
        text += [0x0a] + Array(long.utf8) + [0x0a] + Array("last".utf8)
        let read = try lines(of: text)
        #expect(read.map(\.0) == expected)
        #expect(read.map(\.1) == Array(1...expected.count))
    }

    @Test func anEmptyFileHasNoLines() throws {
        #expect(try lines(of: []).isEmpty)
        #expect(try lines(of: [0x0a]).map(\.1) == [1])
    }
}
