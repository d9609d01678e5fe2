import ArgumentParser
import TickwireCore
import TickwireFeeds
import Foundation

/// `tickwire play FILE --to ENDPOINT[,ENDPOINT] [--rate N] [--drop-a PERCENT] [--retransmit ENDPOINT]
/// [--snapshot ENDPOINT]` and the re-request and snapshot server caps.
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

    @Option(name: .customLong("max-request"), help: "Most messages one re-request is answered with (the rest is trimmed).")
    var maxRequest: Int = 256

    @Option(name: .customLong("request-burst"), help: "Per sender: messages answered in a burst (token bucket size).")
    var requestBurst: Int = 2_048

    @Option(name: .customLong("request-rate"), help: "Per sender: messages a second the bucket refills with.")
    var requestRate: Int = 20_000

    @Option(help: "HOST:PORT to serve GLIMPSE-style snapshots on (SoupBinTCP): the books as they stand at login and the sequence to resume from.")
    var snapshot: String?

    @Option(name: .customLong("snapshot-max-connections"), help: "Snapshot connections at once; more are closed as they come.")
    var snapshotMaxConnections: Int = 16

    @Option(name: .customLong("snapshot-login-timeout"), help: "Seconds a snapshot connection has to log in.")
    var snapshotLoginTimeout: Double = 5

    @Option(name: .customLong("snapshot-max-bytes"), help: "Most bytes of snapshot queued for one connection; a larger snapshot is not sent.")
    var snapshotMaxBytes: Int = 64 << 20

    @Option(name: .customLong("snapshot-user"), help: "The username a snapshot login must give (with --snapshot-password); none: any.")
    var snapshotUser: String?

    @Option(name: .customLong("snapshot-password"), help: "The password a snapshot login must give.")
    var snapshotPassword: String?

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
        guard (1...Int(MoldUDP64.endOfSession) - 1).contains(maxRequest) else { throw ValidationError("--max-request must be 1 to 65534") }
        guard requestBurst >= 1, requestRate >= 1 else { throw ValidationError("--request-burst and --request-rate must be at least 1") }
        guard snapshotMaxConnections >= 1, snapshotLoginTimeout > 0, snapshotMaxBytes >= 1024 else {
            throw ValidationError("--snapshot-max-connections must be at least 1, --snapshot-login-timeout above 0, --snapshot-max-bytes at least 1024")
        }
        let snapshotEndpoint: UDPEndpoint?
        do {
            snapshotEndpoint = try snapshot.map { (s) throws(FeedConfigError) in
                try UDPEndpoint(parsing: s.hasPrefix("tcp://") ? String(s.dropFirst(6)) : s)
            }
        } catch { throw ValidationError("--snapshot: \(error.description)") }
        var options = MoldUDP64Player.Options(rate: rate, dropAPercent: dropA, retransmit: server, session: session,
                                              lingerNanos: Int64(linger * 1e9))
        options.maxMessagesPerRequest = maxRequest
        options.requestBurstMessages = requestBurst
        options.requestRateMessages = requestRate
        options.snapshot = snapshotEndpoint
        options.snapshotServer.maxConnections = snapshotMaxConnections
        options.snapshotServer.loginTimeoutNanos = Int64(snapshotLoginTimeout * 1e9)
        options.snapshotServer.maxOutputBytes = snapshotMaxBytes
        options.snapshotServer.username = snapshotUser
        options.snapshotServer.password = snapshotPassword
        let player = try MoldUDP64Player(path: file, to: lines, options: options)
        _ = player.run(stop: StopSignal())
        for (name, value) in player.counters() { FileHandle.standardError.write(Data("\(name) \(value)\n".utf8)) }
    }
}
