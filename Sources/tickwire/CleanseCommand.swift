import ArgumentParser
import TickwireCore
import TickwireStore

/// `tickwire cleanse`: a cleansing rule over stored history, written as corrections authored by the rule.
struct CleanseCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cleanse",
        abstract: "Run a cleansing rule; what it finds is written as corrections (nothing changes in place).",
        discussion: """
            Rules: price-band (delete trades priced outside --band, a fraction, of the quote prevailing on the same \
            stem: give --subjects covering both, e.g. 'MD.XNAS.>'), crossed-quotes (delete quotes whose bid is at \
            or above the ask), fill-session (for each symbol quoted on --reference and not at all on --venue in \
            the window, insert the reference's quotes on the venue's QUOTE subject; give --subjects covering both, \
            e.g. 'MD.>'). Each correction's author is the rule (rule:price-band(0.05)) and its reason what it \
            saw. --dry-run prints the corrections as `tickwire correct` lines without writing them.
            """)

    @Option(help: "price-band, crossed-quotes or fill-session.") var rule: String
    @Option(help: "For price-band: the band as a fraction of the quote (0.05 is 5%).") var band: Double = 0.05
    @Option(help: "For fill-session: the venue whose session is missing (XNYS).") var venue: String?
    @Option(help: "For fill-session: the venue whose quotes fill it (XNAS).") var reference: String?
    @Option(help: "Subject pattern.") var subjects: String
    @Option(help: "Start of the event-time window (inclusive).") var from: String
    @Option(help: "End of the event-time window (exclusive).") var to: String
    @Flag(name: .customLong("dry-run"), help: "Print what would be corrected; write nothing.") var dryRun = false
    @Option(help: "The data directory.") var data: String = "./tickwire-data"

    func run() throws {
        let r: CleansingRule
        switch rule {
        case "price-band":
            guard band >= 0, band.isFinite else { throw ValidationError("--band must be a fraction of 0 or more, not \(band)") }
            r = .priceBand(fraction: band)
        case "crossed-quotes": r = .crossedQuotes
        case "fill-session":
            guard let venue, let reference, !venue.isEmpty, !reference.isEmpty, venue != reference,
                  !(venue + reference).contains(where: { $0 == "." || $0 == "*" || $0 == ">" || $0 == " " }) else {
                throw ValidationError("fill-session needs --venue and --reference, two different venue names such as XNYS and XNAS")
            }
            r = .fillSession(venue: venue, reference: reference)
        default: throw ValidationError("--rule must be price-band, crossed-quotes or fill-session, not '\(rule)'")
        }
        let store = data + "/store"
        let reader = try StoreReader(directory: store)
        let requests = try r.requests(reader, try StoreQuery(subjects: subjects, from: from, to: to))
        try reader.finishRead(command: "cleanse")
        if dryRun {
            for q in requests { print(CorrectionJSON.line(q)) }
            return
        }
        guard !requests.isEmpty else { print("{\"rule\":\"\(rule)\",\"corrections\":0}"); return }
        let written = try StoreCorrections.apply(store: store, requests)
        print("{\"rule\":\"\(rule)\",\"corrections\":\(written.count),\"first_known_time\":\(written.first!.knownTime.rawValue),\"last_known_time\":\(written.last!.knownTime.rawValue)}")
    }
}
