"""The physical layer's digital parts, no ML and no gRPC: symbols and the CBR (:mod:`.symbols`),
the 5G LDPC + QAM link and its scheme choice (:mod:`.digital_link`), the protected side channel
(:mod:`.side_channel`) and the hyper-latent's range coding (:mod:`.entropy_coding`)."""
