//! Drives a model party's message handling (what `splitlm serve` runs per session) with
//! arbitrary bytes as the data party's side of the stream: it must never panic, and a session
//! fed garbage must end with an error.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use splitlm_device::DeviceSpec;
use splitlm_nn::TaskHead;
use splitlm_nn::testing::fixtures_dir;
use splitlm_partition::Partition;
use splitlm_party::{ModelParty, PartySlice};
use splitlm_protocol::{Limits, StreamTransport, WireDType};
use splitlm_zoo::{AnyModel, Pretrained};

fn body() -> &'static AnyModel {
    static BODY: OnceLock<AnyModel> = OnceLock::new();
    BODY.get_or_init(|| {
        let ckpt = Pretrained::open(&fixtures_dir().join("models/bert")).unwrap();
        let slices = Partition::head_body_tail(1, 1)
            .slices(ckpt.num_layers())
            .unwrap();
        let device = DeviceSpec::Cpu.device().unwrap().autodiff();
        ckpt.load(
            &slices.model,
            TaskHead::SequenceClassification { num_labels: 3 },
            &device,
        )
        .unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let party = ModelParty::new(PartySlice::frozen(body().clone()).unwrap(), WireDType::F32);
    let limits = Limits {
        max_message_bytes: 1 << 20,
        ..Limits::default()
    };
    let transport = StreamTransport::new(data, std::io::sink(), limits);
    // Running out of input ends the session as a disconnect; nothing may panic.
    let _ = party.serve(transport);
});
