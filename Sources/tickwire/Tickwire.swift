import ArgumentParser

/// `tickwire`: the feed-handler daemon and the tools around it. Argument parsing and wiring only; everything
/// worth testing lives in the library modules.
@main
struct Tickwire: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tickwire",
        abstract: "A low-latency trading-floor feed handler: feeds in, subject-tagged events out over ZeroMQ.",
        subcommands: [Run.self, Tail.self, Ticker.self, Stats.self, Risk.self, Decode.self, Play.self,
                      ImportCommand.self, ReplayCommand.self, QueryCommand.self, ExportCommand.self,
                      TradeCommand.self, KeygenCommand.self, AuditCommand.self, CorrectCommand.self, CleanseCommand.self]
    )
}
