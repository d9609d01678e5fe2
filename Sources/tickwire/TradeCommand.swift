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
        @Option(help: "Most trades in flight at once.") var window = 8192
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
            // A file that cannot be opened is a bad argument, found before any connection is made.
            let input: Int32? = file.map { $0 == "-" ? STDIN_FILENO : open($0, O_RDONLY | O_CLOEXEC) }
            if let file, input! < 0 { throw ValidationError("cannot read \(file): \(String(cString: strerror(errno)))") }
            defer { if let input, input != STDIN_FILENO { close(input) } }
            let context = ZMQContext()
            let client = try TradeClient.forDataDirectory(data, trader: trader, context: context, endpoint: connect)
            defer { client.close() }
            // With several daemons (a replicated pair), a trade with no reply after --retry-ms, or refused because
            // the replicated log was unavailable, is sent again with the same id (through whichever daemon is up)
            // until --timeout-ms: an id names one trade, so a retry never makes a second one.
            let retry = retryMs ?? (connect.contains(",") ? 2_000 : 0)
            let submitter = RetryingSubmitter(client: client, policy: .init(resendAfterMs: retry > 0 ? retry : nil,
                                                                          giveUpAfterMs: timeoutMs))
            let out = OutputLines()
            defer { out.flush() }
            var failed = false
            func emit(_ outcome: RetryingSubmitter.Outcome) {
                switch outcome {
                case .replied(.ack(let id, let seq, _)): out.line { $0.field("id", id); $0.field("seq", seq) }
                case .replied(.reject(let id, let reason)): out.line { $0.field("id", id); $0.field("error", reason.text) }; failed = true
                case .noReply(let id, let ms): out.line { $0.field("id", id); $0.field("error", "no reply within \(ms) ms") }; failed = true
                }
            }
            // Replies already waiting are taken at once; only when none is does the output go out before waiting,
            // so a reader of the output sees every reply that came in while the command waits for more.
            func drain(untilBelow limit: Int) throws {
                while submitter.outstanding >= max(1, limit) {
                    if try !submitter.poll(timeoutMs: 0, emit) {
                        out.flush()
                        try submitter.poll(timeoutMs: -1, emit)
                    }
                }
            }
            if let file, let input {
                // Read once: an @Option's getter looks up generic metadata on every read (1% of the command's time
                // when read a line).
                let batch = self.batch, window = self.window
                // Consecutive trades travel together, up to `batch` a message (their replies come back together).
                var batched: [EncodedTrade] = []
                batched.reserveCapacity(batch)
                func flush() throws {
                    guard !batched.isEmpty else { return }
                    try drain(untilBelow: max(1, window - batched.count + 1))
                    try submitter.send(encoded: batched, batch: batch)
                    batched.removeAll(keepingCapacity: true)
                }
                // From a pipe or a terminal the next line may be long in coming: what was read is sent before
                // waiting for more, and replies are printed as they come meanwhile. (A file's reads never wait.)
                var status = stat()
                let streaming = fstat(input, &status) != 0 || (status.st_mode & S_IFMT) != S_IFREG
                func beforeRead() throws {
                    guard streaming else { return }
                    try flush()
                    try submitter.takeReplies(untilReadable: input, emit, idle: out.flush)
                    out.flush()
                }
                do {
                    try TradeFile.forEachLine(fd: input, { line, n in
                        do {
                            guard let trade = try TradeLine.encode(line) else { return }
                            batched.append(trade)
                        } catch {
                            out.line { $0.field("line", UInt64(n)); $0.field("error", "\(file):\(n): \(error)") }
                            failed = true
                            return
                        }
                        if batched.count >= batch { try flush() }
                    }, beforeRead: beforeRead)
                } catch let e as TradeInputError { throw ValidationError("\(file): \(e)") }
                try flush()
                try drain(untilBelow: 1)
            } else {
                guard let desk, let symbol, let side, let qty, let price, let id else {
                    throw ValidationError("give --desk, --symbol, --side, --qty, --price and --id, or --file")
                }
                try submitter.send([try makeRequest(desk: desk, symbol: symbol, side: side, qty: qty, price: price, id: id)])
                try drain(untilBelow: 1)
            }
            if failed { throw ExitCode(1) }
        }
    }
}

func makeRequest(desk: String, symbol: String, side: String, qty: String, price: String, id: String) throws -> TradeRequest {
    do { return try TradeRequest(desk: desk, symbol: symbol, side: side, qty: qty, price: price, id: id) } catch {
        throw ValidationError(error.reason)
    }
}

/// Standard output as one JSON object a line, written in large blocks (a file's acknowledgements are many short
/// lines) and whenever the caller is about to wait.
final class OutputLines {
    private static let capacity = 1 << 16
    private let buffer = UnsafeMutablePointer<UInt8>.allocate(capacity: OutputLines.capacity)
    // The command's thread's: exclusivity is not checked at run time (a runtime call pair per byte written).
    @exclusivity(unchecked) private var count = 0
    @exclusivity(unchecked) private var first = true

    deinit { buffer.deallocate() }

    /// Appends `{…}` and a newline, the fields written by `body`.
    func line(_ body: (OutputLines) -> Void) {
        byte(UInt8(ascii: "{"))
        first = true
        body(self)
        byte(UInt8(ascii: "}")); byte(UInt8(ascii: "\n"))
        if count >= Self.capacity / 2 { flush() }
    }

    func field(_ key: StaticString, _ value: UInt64) {
        name(key)
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)   // 24 bytes: room for 20 digits
        withUnsafeMutableBytes(of: &digits) { d in
            var v = value, i = d.count
            repeat { i -= 1; d[i] = UInt8(ascii: "0") + UInt8(v % 10); v /= 10 } while v > 0
            append(UnsafeRawBufferPointer(rebasing: d[i...]))
        }
    }

    func field(_ key: StaticString, _ value: String) {
        name(key)
        var value = value
        value.withUTF8 { b in
            // Client order ids are printable ASCII without quotes or backslashes: most values need no escaping.
            if b.allSatisfy({ $0 >= 0x20 && $0 < 0x7f && $0 != 0x22 && $0 != 0x5c }) {
                byte(UInt8(ascii: "\""))
                append(UnsafeRawBufferPointer(b))
                byte(UInt8(ascii: "\""))
            } else {
                var quoted = TradeWire.jsonQuoted(String(decoding: b, as: UTF8.self))
                quoted.withUTF8 { append(UnsafeRawBufferPointer($0)) }
            }
        }
    }

    private func name(_ key: StaticString) {
        if !first { byte(UInt8(ascii: ",")) }
        first = false
        byte(UInt8(ascii: "\""))
        append(UnsafeRawBufferPointer(start: key.utf8Start, count: key.utf8CodeUnitCount))
        byte(UInt8(ascii: "\"")); byte(UInt8(ascii: ":"))
    }

    @inline(__always) private func byte(_ b: UInt8) {
        if count == Self.capacity { flush() }
        buffer[count] = b
        count += 1
    }

    private func append(_ b: UnsafeRawBufferPointer) {
        if count + b.count > Self.capacity {
            flush()
            if b.count > Self.capacity { return write(b) }
        }
        if let base = b.baseAddress { (buffer + count).update(from: base.assumingMemoryBound(to: UInt8.self), count: b.count) }
        count += b.count
    }

    /// Writes what is buffered (a closed or full output loses it, as `print` would).
    func flush() {
        write(UnsafeRawBufferPointer(start: buffer, count: count))
        count = 0
    }

    private func write(_ b: UnsafeRawBufferPointer) {
        var done = 0
        while done < b.count {
            let n = Glibc.write(STDOUT_FILENO, b.baseAddress! + done, b.count - done)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            done += n
        }
    }
}
