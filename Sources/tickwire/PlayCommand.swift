import ArgumentParser
import TickwireCore
import TickwireFeeds
import Foundation

/// `tickwire play FILE --to ENDPOINT[,ENDPOINT] [--rate N] [--drop-a PERCENT] [--retransmit ENDPOINT]`.
struct Play: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Play an ITCH 5.0 file out as a MoldUDP64 session on one or two lines, answering re-requests.")

    @Argument(help: "An ITCH 5.0 BinaryFILE.")
    var file: String

    @Option(help: "Line A[,line B]: HOST:PORT, unicast or multicast.")
    var to: String

    @Option(help: "Messages per second (0: as fast as possible).")
    var rate: Int = 100_000

    @Option(name: .customLong("drop-a"), help: "Percent of line A's packets not sent (to exercise arbitration and recovery).")
    var dropA: Double = 0

    @Option(help: "HOST:PORT to answer MoldUDP64 re-requests on.")
    var retransmit: String?

    @Option(help: "MoldUDP64 session name (up to 10 characters).")
    var session: String = "TICKWIRE"

    @Option(help: "Seconds to keep answering re-requests after the end of session.")
    var linger: Double = 2

    func run() throws {
        let lines: [UDPEndpoint]
        let server: UDPEndpoint?
        do {
            lines = try to.split(separator: ",").map { (s) throws(FeedConfigError) in try UDPEndpoint(parsing: String(s)) }
            server = try retransmit.map { (s) throws(FeedConfigError) in try UDPEndpoint(parsing: s) }
        } catch { throw ValidationError(error.description) }
        guard (1...2).contains(lines.count) else { throw ValidationError("--to takes one or two endpoints") }
        guard (0...100).contains(dropA) else { throw ValidationError("--drop-a is a percentage, 0 to 100") }
        guard rate >= 0 else { throw ValidationError("--rate must be 0 or more") }
        let player = try MoldUDP64Player(path: file, to: lines, options: .init(
            rate: rate, dropAPercent: dropA, retransmit: server, session: session, lingerNanos: Int64(linger * 1e9)))
        let counts = player.run(stop: StopSignal())
        for (name, value) in counts.pairs() { FileHandle.standardError.write(Data("\(name) \(value)\n".utf8)) }
    }
}
