"""The stack's shared infrastructure beside the functions: the catalog database (Aurora PostgreSQL
Serverless v2) and the AWS Batch queue that runs heavy functions past Lambda's limits."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from embedlake.aws.cfn import allow, att, ref, sub

# A Fargate job of the heavy functions: Lambda's 15 minutes and 10 GB are the limits it lifts.
JOB_VCPUS, JOB_MEMORY_MB, JOB_MAX_VCPUS, JOB_STORAGE_GIB = 4, 16384, 16, 100


def database(secret: Any) -> dict[str, Any]:
    """Aurora PostgreSQL Serverless v2 with a password RDS keeps in Secrets Manager (``secret``)."""
    vpc = ref("VpcId")
    ingress = {
        "IpProtocol": "tcp",
        "FromPort": 5432,
        "ToPort": 5432,
        "SourceSecurityGroupId": att("FunctionSecurityGroup", "GroupId"),
    }
    scaling = {"MinCapacity": ref("DatabaseMinCapacity"), "MaxCapacity": ref("DatabaseMaxCapacity")}
    return {
        "FunctionSecurityGroup": {
            "Type": "AWS::EC2::SecurityGroup",
            "Properties": {"GroupDescription": "embedlake functions", "VpcId": vpc},
        },
        "DatabaseSecurityGroup": {
            "Type": "AWS::EC2::SecurityGroup",
            "Properties": {
                "GroupDescription": "embedlake catalog",
                "VpcId": vpc,
                "SecurityGroupIngress": [ingress],
            },
        },
        "DatabaseSubnetGroup": {
            "Type": "AWS::RDS::DBSubnetGroup",
            "Properties": {"DBSubnetGroupDescription": "embedlake", "SubnetIds": ref("SubnetIds")},
        },
        "DatabaseCluster": {
            "Type": "AWS::RDS::DBCluster",
            "DeletionPolicy": "Snapshot",
            "UpdateReplacePolicy": "Snapshot",
            "Properties": {
                "Engine": "aurora-postgresql",
                "EngineVersion": ref("DatabaseEngineVersion"),
                "DatabaseName": ref("DatabaseName"),
                "MasterUsername": ref("DatabaseUser"),
                "ManageMasterUserPassword": True,
                "DBSubnetGroupName": ref("DatabaseSubnetGroup"),
                "VpcSecurityGroupIds": [att("DatabaseSecurityGroup", "GroupId")],
                "StorageEncrypted": True,
                "ServerlessV2ScalingConfiguration": scaling,
            },
        },
        "DatabaseInstance": {
            "Type": "AWS::RDS::DBInstance",
            "Properties": {
                "Engine": "aurora-postgresql",
                "DBInstanceClass": "db.serverless",
                "DBClusterIdentifier": ref("DatabaseCluster"),
            },
        },
    }


def database_outputs(secret: Any) -> dict[str, Any]:
    return {
        "DatabaseEndpoint": {"Value": att("DatabaseCluster", "Endpoint.Address")},
        "DatabaseSecretArn": {"Value": secret},
    }


def batch_parameters() -> dict[str, Any]:
    return {
        "HeavyJobVcpus": {
            "Type": "Number",
            "Default": JOB_VCPUS,
            "AllowedValues": [1, 2, 4, 8, 16],
        },
        "HeavyJobMemory": {"Type": "Number", "Default": JOB_MEMORY_MB, "MinValue": 2048},
        "HeavyMaxVcpus": {"Type": "Number", "Default": JOB_MAX_VCPUS, "MinValue": 1},
    }


def batch(
    *,
    environment: Mapping[str, Any],
    security_groups: Any,
    s3_statements: list[dict[str, Any]],
    secret: Any,
    dispatch_name: Any,
    retries: int,
    timeout: int,
) -> dict[str, Any]:
    """A Fargate compute environment, its job queue and the job definition of the heavy functions:
    the Lambda image, started as ``job FUNCTION EVENT_ID`` (see embedlake.aws.job), with the
    functions' environment, a role for what the heavy functions touch and to poke dispatch."""
    trust = {
        "Effect": "Allow",
        "Principal": {"Service": "ecs-tasks.amazonaws.com"},
        "Action": "sts:AssumeRole",
    }
    dispatch = sub(
        "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:${Name}",
        Name=dispatch_name,
    )
    statements = [
        allow(["secretsmanager:GetSecretValue"], [secret]),
        allow(["lambda:InvokeFunction"], [dispatch]),
        *s3_statements,
    ]
    execution_policy = sub(
        "arn:${AWS::Partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
    )
    variables = [{"Name": k, "Value": v} for k, v in environment.items()]
    variables.append({"Name": "EMBEDLAKE_AWS_FUNCTION_DISPATCH", "Value": dispatch_name})
    compute = {
        "Type": "FARGATE",
        "MaxvCpus": ref("HeavyMaxVcpus"),
        "Subnets": ref("SubnetIds"),
        "SecurityGroupIds": security_groups,
    }
    container = {
        "Image": ref("ImageUri"),
        "Command": ["job", "Ref::function", "Ref::event"],
        "Environment": variables,
        "ResourceRequirements": [
            {"Type": "VCPU", "Value": ref("HeavyJobVcpus")},
            {"Type": "MEMORY", "Value": ref("HeavyJobMemory")},
        ],
        "ExecutionRoleArn": att("HeavyJobExecutionRole", "Arn"),
        "JobRoleArn": att("HeavyJobRole", "Arn"),
        "NetworkConfiguration": {"AssignPublicIp": "DISABLED"},
        "EphemeralStorage": {"SizeInGiB": JOB_STORAGE_GIB},
        "FargatePlatformConfiguration": {"PlatformVersion": "LATEST"},
    }
    return {
        "HeavyJobRole": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [trust]},
                "Policies": [
                    {
                        "PolicyName": "embedlake-heavy-jobs",
                        "PolicyDocument": {"Version": "2012-10-17", "Statement": statements},
                    }
                ],
            },
        },
        "HeavyJobExecutionRole": {  # pulls the image, writes the logs
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [trust]},
                "ManagedPolicyArns": [execution_policy],
            },
        },
        "HeavyComputeEnvironment": {
            "Type": "AWS::Batch::ComputeEnvironment",
            "Properties": {"Type": "MANAGED", "State": "ENABLED", "ComputeResources": compute},
        },
        "HeavyJobQueue": {
            "Type": "AWS::Batch::JobQueue",
            "Properties": {
                "Priority": 1,
                "State": "ENABLED",
                "ComputeEnvironmentOrder": [
                    {"Order": 1, "ComputeEnvironment": ref("HeavyComputeEnvironment")}
                ],
            },
        },
        "HeavyJobDefinition": {
            "Type": "AWS::Batch::JobDefinition",
            "Properties": {
                "Type": "container",
                "PlatformCapabilities": ["FARGATE"],
                "ContainerProperties": container,
                # the invocation row decides what a retry does: a finished one is a no-op
                "RetryStrategy": {"Attempts": min(max(retries + 1, 1), 10)},
                "Timeout": {"AttemptDurationSeconds": max(timeout, 60)},
            },
        },
    }
