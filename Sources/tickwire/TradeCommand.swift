import ArgumentParser
import Foundation
import TickwireCore
import TickwireTradeClient
import TickwireZMQ

/// `tickwire trade submit …`: send trades to the daemon and print one JSON acknowledgement a line.
struct TradeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trade", abstract: "Submit trades to the daemon; each is acknowledged only once durable.",
        subcommands: [Submit.self])

    struct Submit: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Send one trade (flags) or many (--file, one JSON object a line, many in flight).",
            discussion: """
            Prints one JSON line per trade as its reply arrives: {"id":"…","seq":N} or {"id":"…","error":"…"}.
            A retry of an id already accepted prints the original sequence. Exits 1 if any trade was not accepted.
            """)

        @Option(help: "Desk (or book) the trade is for.") var desk: String?
        @Option(help: "Symbol.") var symbol: String?
        @Option(help: "buy or sell.") var side: String?
        // `.unconditional`: the next word is the value even when it looks like a flag, so `--price -5` reaches the
        // check below ("price must be positive") instead of ArgumentParser's "Missing value" (`--price=-5` works too).
        @Option(parsing: .unconditional, help: "Quantity, a positive decimal (up to 8 fractional digits).") var qty: String?
        @Option(parsing: .unconditional, help: "Price, a positive decimal (up to 8 fractional digits).") var price: String?
        @Option(help: "Client order id: a retry with the same id never makes a second trade.") var id: String?
        @Option(help: "A JSONL file of trades with keys desk, symbol, side, qty, price, id ('-' for stdin).") var file: String?
        @Option(help: "The trade endpoint, or the endpoints of a replicated pair separated by commas (A,B).") var connect = "tcp://127.0.0.1:5557"
        @Option(help: "Data directory holding keys/ (the server's public key and the trader's pair).") var data = "./tickwire-data"
        @Option(help: "Trader key to use (keys/traders/NAME.key); default: the first.") var trader: String?
        @Option(help: "Most trades in flight at once.") var window = 4096
        @Option(help: "Most trades sent in one message (--file).") var batch = 64
        @Option(help: "Give up on a reply after this many milliseconds.") var timeoutMs = 10_000
        @Option(help: "Resend (same id) a trade with no reply after this many milliseconds, or refused because the replicated log was unavailable. Default: 2000 with several --connect endpoints, else never.") var retryMs: Int?

        func validate() throws {
            guard (1...TradeWire.maxTradesPerMessage).contains(batch) else {
                throw ValidationError("--batch must be 1...\(TradeWire.maxTradesPerMessage)")
            }
            guard window >= 1 else { throw ValidationError("--window must be at least 1") }
            // A bad single trade is a bad argument (exit 64), found before any connection is made.
            if file == nil, let desk, let symbol, let side, let qty, let price, let id {
                _ = try makeRequest(desk: desk, symbol: symbol, side: side, qty: qty, price: price, id: id)
            }
        }

        func run() throws {
            let context = ZMQContext()
            let client = try TradeClient.forDataDirectory(data, trader: trader, context: context, endpoint: connect)
            defer { client.close() }
            // With several daemons (a replicated pair), a trade with no reply after --retry-ms, or refused because
            // the replicated log was unavailable, is sent again with the same id (through whichever daemon is up)
            // until --timeout-ms: an id names one trade, so a retry never makes a second one.
            let retry = retryMs ?? (connect.contains(",") ? 2_000 : 0)
            let submitter = RetryingSubmitter(client: client, policy: .init(resendAfterMs: retry > 0 ? retry : nil,
                                                                          giveUpAfterMs: timeoutMs))
            var failed = false
            func emit(_ outcome: RetryingSubmitter.Outcome) {
                switch outcome {
                case .replied(.ack(let id, let seq, _)): print("{\"id\":\(TradeWire.jsonQuoted(id)),\"seq\":\(seq)}")
                case .replied(.reject(let id, let reason)):
                    print("{\"id\":\(TradeWire.jsonQuoted(id)),\"error\":\(TradeWire.jsonQuoted(reason.text))}"); failed = true
                case .noReply(let id, let ms): print("{\"id\":\(TradeWire.jsonQuoted(id)),\"error\":\"no reply within \(ms) ms\"}"); failed = true
                }
            }
            func send(_ requests: [TradeRequest]) throws { try submitter.send(requests, batch: batch) }
            func drain(untilBelow limit: Int) throws { try submitter.drain(untilBelow: limit, emit) }
            if let file {
                let text: String
                if file == "-" {
                    text = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
                } else {
                    guard let data = FileManager.default.contents(atPath: file) else {
                        throw ValidationError("cannot read \(file)")
                    }
                    text = String(decoding: data, as: UTF8.self)
                }
                // Consecutive trades travel together, up to `batch` a message (their replies come back together).
                var batched: [TradeRequest] = []
                func flush() throws {
                    guard !batched.isEmpty else { return }
                    try drain(untilBelow: max(1, window - batched.count + 1))
                    try send(batched)
                    batched.removeAll(keepingCapacity: true)
                }
                for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                    if line.allSatisfy(\.isWhitespace) { continue }
                    let request: TradeRequest
                    do { request = try parseLine(String(line)) } catch {
                        print("{\"line\":\(n + 1),\"error\":\(TradeWire.jsonQuoted("\(file):\(n + 1): \(error)"))}")
                        failed = true
                        continue
                    }
                    batched.append(request)
                    if batched.count >= batch { try flush() }
                }
                try flush()
                try drain(untilBelow: 1)
            } else {
                guard let desk, let symbol, let side, let qty, let price, let id else {
                    throw ValidationError("give --desk, --symbol, --side, --qty, --price and --id, or --file")
                }
                try send([try makeRequest(desk: desk, symbol: symbol, side: side, qty: qty, price: price, id: id)])
                try drain(untilBelow: 1)
            }
            if failed { throw ExitCode(1) }
        }

        func parseLine(_ line: String) throws -> TradeRequest {
            guard let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] else {
                throw ValidationError("not a JSON object")
            }
            func field(_ key: String) throws -> String {
                switch object[key] {
                case let s as String: return s
                case let n as NSNumber: return n.stringValue
                default: throw ValidationError("missing or non-scalar \"\(key)\"")
                }
            }
            return try makeRequest(desk: field("desk"), symbol: field("symbol"), side: field("side"), qty: field("qty"),
                                   price: field("price"), id: field("id"))
        }
    }
}

func makeRequest(desk: String, symbol: String, side: String, qty: String, price: String, id: String) throws -> TradeRequest {
    let s: Side
    switch side.lowercased() {
    case "buy", "b": s = .buy
    case "sell", "s": s = .sell
    default: throw ValidationError("side '\(side)' must be buy or sell")
    }
    let quantity: Quantity, limit: Price
    do { quantity = try Quantity(parsing: qty) } catch { throw ValidationError("qty '\(qty)': \(error.reason)") }
    do { limit = try Price(parsing: price) } catch { throw ValidationError("price '\(price)': \(error.reason)") }
    let request = TradeRequest(desk: desk, symbol: symbol, side: s, quantity: quantity, price: limit, clientOrderID: id)
    if let bad = request.validationError() { throw ValidationError(bad.text) }
    return request
}

