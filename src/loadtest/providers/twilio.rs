//! Twilio: the protocol the shared driver speaks natively (webhooks, `<Connect><Stream>`,
//! the Media Streams JSON, REST call updates at `/2010-04-01/Accounts/{sid}/Calls/{call}`).
//! Its credentials are the `--account-sid` / `--auth-token` options.
