pub fn load(_p: &std::path::Path) -> Result<(super::GatewayConfig, super::Diagnostics), super::ConfigError> { unimplemented!() }
